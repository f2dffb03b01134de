// Running command-line tools from tests (curl, promtool, gnutls-cli, the ewgw binary itself).
#pragma once

#include <cstdint>
#include <string>

namespace ewgw::test {

struct command_result {
  int status = -1;      // exit status; -1 when it did not exit normally or could not start
  std::string output;   // stdout, and stderr when merge_stderr
};

// Runs `command` with /bin/sh and collects its output.
command_result run_command(const std::string& command, bool merge_stderr = true);

struct http_reply {
  int code = 0;  // 0 when curl got no answer
  std::string body;
};

// GET http://127.0.0.1:<port><path> with curl (5 s limit).
http_reply http_get(std::uint16_t port, const std::string& path);

}  // namespace ewgw::test
