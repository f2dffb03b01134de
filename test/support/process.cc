#include "test/support/process.h"

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstdlib>

namespace ewgw::test {

command_result run_command(const std::string& command, bool merge_stderr) {
  command_result r;
  FILE* p = ::popen((merge_stderr ? command + " 2>&1" : command).c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  std::size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.output.append(buf.data(), n);
  const int status = ::pclose(p);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

http_reply http_get(std::uint16_t port, const std::string& path) {
  // The status code goes on a line of its own after the body.
  const auto r = run_command("curl -s -m 5 -w '\\n%{http_code}' 'http://127.0.0.1:" + std::to_string(port) + path + "'");
  http_reply reply;
  const std::size_t nl = r.output.rfind('\n');
  if (nl == std::string::npos) return reply;
  reply.code = std::atoi(r.output.c_str() + nl + 1);
  reply.body = r.output.substr(0, nl);
  return reply;
}

}  // namespace ewgw::test
