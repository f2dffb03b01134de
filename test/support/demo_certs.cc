// ewgw-demo-certs DIR NAME...: writes a throwaway PKI for the demo into DIR:
//   root.crt, intermediate.crt
//   server.crt (leaf + intermediate), server.key   CN=NAME[0], DNS SANs = every NAME
//   client.crt (leaf + intermediate), client.key   CN=sleep, SAN spiffe://cluster.local/ns/sample/sa/sleep
//   server-leaf.crt, client-leaf.crt               the leaves alone
// An IPv4/IPv6 literal among the names becomes an IP SAN. The same files serve
// ewgw-demo-backend and curl (--cacert root.crt --cert client.crt --key client.key); with
// openssl s_client also pass -cert_chain client.crt, since -cert sends only the leaf.
#include <cstdio>
#include <exception>
#include <filesystem>
#include <string>
#include <vector>

#include "test/support/certs.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: ewgw-demo-certs DIR NAME...\n");
    return 2;
  }
  try {
    const std::filesystem::path dir = argv[1];
    const std::vector<std::string> names(argv + 2, argv + argc);
    const ewgw::test::test_pki pki("ewgw demo");
    const auto server = pki.make_leaf(names.front(), names, ewgw::test::cert_usage::server);
    const auto client =
        pki.make_leaf("sleep", {"spiffe://cluster.local/ns/sample/sa/sleep"}, ewgw::test::cert_usage::client);
    ewgw::test::write_leaf_files(dir, "server", server);
    ewgw::test::write_leaf_files(dir, "client", client);
    ewgw::test::write_pem_file(dir, "intermediate.crt", pki.intermediate_pem());
    std::printf("wrote root.crt, intermediate.crt, server.crt, server.key, client.crt, client.key to %s\n",
                dir.c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ewgw-demo-certs: %s\n", e.what());
    return 1;
  }
}
