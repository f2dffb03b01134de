// The access log format parser and renderer: Envoy's syntax, Istio's default formats, typed JSON
// with escaping, START_TIME formats, response flag order, and the errors for bad formats.
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "accesslog/format.h"

namespace ewgw::accesslog {
namespace {

using namespace std::chrono_literals;

// Istio's EnvoyTextLogFormat (pilot/pkg/model/telemetry_logging.go), what meshConfig
// accessLogFile with the default TEXT encoding configures.
const std::string istio_text_format =
    "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% "
    "%RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% "
    "\"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% "
    "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" "
    "\"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER_RAW% "
    "%UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% "
    "%ROUTE_NAME%\n";

address v4(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d, std::uint16_t port) {
  address out;
  out.ip = {a, b, c, d};
  out.port = port;
  out.set = true;
  return out;
}

// 2026-11-21T14:52:07.123456789Z
std::chrono::system_clock::time_point fixed_time() {
  return std::chrono::system_clock::time_point(std::chrono::duration_cast<std::chrono::system_clock::duration>(
      std::chrono::seconds(1795272727) + std::chrono::nanoseconds(123456789)));
}

record routed_record() {
  record r;
  r.start_time = fixed_time();
  r.started = std::chrono::steady_clock::time_point(10s);
  r.ended = r.started + 1234ms + 900us;
  r.bytes_received = 517;
  r.bytes_sent = 4096;
  r.connection_id = 42;
  r.connect_attempts = 1;
  r.downstream_remote = v4(10, 0, 0, 7, 40001);
  r.downstream_local = v4(10, 0, 0, 1, 15443);
  r.upstream_host = v4(10, 1, 2, 3, 5000);
  r.upstream_local = v4(10, 0, 0, 1, 51234);
  r.requested_server_name = "outbound_.5000_._.helloworld.sample.svc.cluster.local";
  auto cluster = std::make_shared<const std::string>("outbound_.5000_._.helloworld.sample.svc.cluster.local");
  r.upstream_cluster = *cluster;
  r.upstream_cluster_owner = std::move(cluster);
  r.filter_chain_name = std::make_shared<const std::string>("helloworld-chain");
  return r;
}

std::string render(const format_config& c, const record& r) {
  std::string error;
  auto f = formatter::compile(c, error);
  EXPECT_TRUE(f) << error;
  std::string out;
  if (f) f->render(r, out);
  return out;
}

format_config text(std::string t) {
  format_config c;
  c.type = format_config::kind::text;
  c.text = std::move(t);
  return c;
}

std::string compile_error(const format_config& c) {
  std::string error;
  auto f = formatter::compile(c, error);
  EXPECT_FALSE(f) << "compiled: " << (c.type == format_config::kind::text ? c.text : "json");
  return error;
}

TEST(FormatTest, IstioDefaultTextFormatForARoutedConnection) {
  EXPECT_EQ(render(text(istio_text_format), routed_record()),
            "[2026-11-21T14:52:07.123Z] \"- - -\" 0 - - - \"-\" 517 4096 1234 - \"-\" \"-\" \"-\" \"-\" "
            "\"10.1.2.3:5000\" outbound_.5000_._.helloworld.sample.svc.cluster.local 10.0.0.1:51234 "
            "10.0.0.1:15443 10.0.0.7:40001 outbound_.5000_._.helloworld.sample.svc.cluster.local -\n");
}

TEST(FormatTest, IstioDefaultTextFormatForAFailedConnect) {
  record r = routed_record();
  r.set(response_flag::upstream_connection_failure);
  r.set(response_flag::upstream_retry_limit_exceeded);
  r.upstream_connect_errno = 111;
  r.upstream_local = {};
  r.bytes_sent = 0;
  const std::string line = render(text(istio_text_format), r);
  EXPECT_NE(line.find("\"- - -\" 0 UF,URX - - \"delayed_connect_error:_111\" 517 0 1234 "), std::string::npos) << line;
  EXPECT_NE(line.find("\"10.1.2.3:5000\" outbound_.5000_._.helloworld.sample.svc.cluster.local - 10.0.0.1:15443"),
            std::string::npos)
      << line;
}

TEST(FormatTest, EnvoyDefaultFormatWhenNoneIsGiven) {
  format_config c;  // envoy_default
  EXPECT_EQ(render(c, routed_record()),
            "[2026-11-21T14:52:07.123Z] \"- - -\" 0 - 517 4096 1234 - \"-\" \"-\" \"-\" \"-\" \"10.1.2.3:5000\"\n");
}

TEST(FormatTest, ResponseFlagsInEnvoysOrderShortAndLong) {
  record r = routed_record();
  r.set(response_flag::upstream_retry_limit_exceeded);  // set first, printed after UF
  r.set(response_flag::upstream_connection_failure);
  r.set(response_flag::no_healthy_upstream);
  EXPECT_EQ(render(text("%RESPONSE_FLAGS%|%RESPONSE_FLAGS_LONG%"), r),
            "UH,UF,URX|NoHealthyUpstream,UpstreamConnectionFailure,UpstreamRetryLimitExceeded");
  record none = routed_record();
  EXPECT_EQ(render(text("%RESPONSE_FLAGS%"), none), "-");
  response_flag f;
  ASSERT_TRUE(parse_flag("NR", f));
  EXPECT_EQ(f, response_flag::no_route_found);
  EXPECT_FALSE(parse_flag("XX", f));
}

TEST(FormatTest, AddressVariantsAndIpv6) {
  record r = routed_record();
  r.downstream_remote.v6 = true;
  r.downstream_remote.ip = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  EXPECT_EQ(render(text("%DOWNSTREAM_REMOTE_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% %DOWNSTREAM_REMOTE_PORT% "
                        "%UPSTREAM_HOST% %UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% %UPSTREAM_LOCAL_PORT%"),
                   r),
            "[2001:db8::1]:40001 2001:db8::1 40001 10.1.2.3:5000 10.1.2.3 51234");
}

TEST(FormatTest, StartTimeFormats) {
  const record r = routed_record();
  EXPECT_EQ(render(text("%START_TIME(%Y/%m/%d %H:%M:%S)%"), r), "2026/11/21 14:52:07");
  EXPECT_EQ(render(text("%START_TIME(%s.%3f)%"), r), "1795272727.123");
  EXPECT_EQ(render(text("%START_TIME(%E6S|%f|%1f)%"), r), "07.123456|123456789|1");
}

TEST(FormatTest, LiteralsMaxLengthAndPercent) {
  const record r = routed_record();
  EXPECT_EQ(render(text("sni=%REQUESTED_SERVER_NAME:8% 100%% done"), r), "sni=outbound 100% done");
  EXPECT_EQ(render(text("plain text"), r), "plain text");
  EXPECT_EQ(render(text("%FILTER_CHAIN_NAME% %CONNECTION_ID% %UPSTREAM_REQUEST_ATTEMPT_COUNT% %ROUTE_NAME%"), r),
            "helloworld-chain 42 1 -");
}

TEST(FormatTest, OmitEmptyValuesInText) {
  format_config c = text("[%ROUTE_NAME%][%BYTES_SENT%]");
  c.omit_empty_values = true;
  EXPECT_EQ(render(c, routed_record()), "[][4096]");
}

TEST(FormatTest, BadFormatsAreRefusedWithTheOperatorNamed) {
  EXPECT_EQ(compile_error(text("x %UPSTREAM_HOSTT% y")), "unknown command operator 'UPSTREAM_HOSTT' at position 2");
  EXPECT_NE(compile_error(text("%START_TIME")).find("no valid command operator at position 0"), std::string::npos);
  EXPECT_NE(compile_error(text("50% off")).find("position 2"), std::string::npos);
  EXPECT_EQ(compile_error(text("%BYTES_SENT(x)%")), "command operator 'BYTES_SENT' takes no parameters");
  EXPECT_NE(compile_error(text("%REQ%")).find("'REQ' needs parameters"), std::string::npos);
  EXPECT_NE(compile_error(text("%REQ(:path%")).find("unterminated '('"), std::string::npos);
  format_config j;
  j.type = format_config::kind::json;
  j.json.type = json_value::kind::object;
  json_value bad;
  bad.text = "%NOPE%";
  j.json.members.emplace_back("inner", json_value{json_value::kind::object, "", {{"field", bad}}});
  EXPECT_EQ(compile_error(j), "json_format.inner.field: unknown command operator 'NOPE' at position 0");
}

format_config json(std::vector<std::pair<std::string, std::string>> fields) {
  format_config c;
  c.type = format_config::kind::json;
  c.json.type = json_value::kind::object;
  for (auto& [k, v] : fields) {
    json_value jv;
    jv.text = v;
    c.json.members.emplace_back(k, jv);
  }
  return c;
}

google::protobuf::Struct parse_json(const std::string& line) {
  google::protobuf::Struct s;
  const auto status = google::protobuf::util::JsonStringToMessage(line, &s);
  EXPECT_TRUE(status.ok()) << status.ToString() << "\n" << line;
  return s;
}

TEST(FormatTest, JsonIsTypedEscapedAndParses) {
  record r = routed_record();
  // A hostile SNI: quotes, backslash and control characters must not break the line.
  r.requested_server_name = "a\"b\\c\nd\x01";
  const std::string line = render(json({{"start_time", "%START_TIME%"},
                                        {"bytes_received", "%BYTES_RECEIVED%"},
                                        {"duration", "%DURATION%"},
                                        {"response_code", "%RESPONSE_CODE%"},
                                        {"response_flags", "%RESPONSE_FLAGS%"},
                                        {"sni", "%REQUESTED_SERVER_NAME%"},
                                        {"upstream_host", "%UPSTREAM_HOST%"},
                                        {"mixed", "to %UPSTREAM_HOST% via %ROUTE_NAME%"}}),
                                  r);
  ASSERT_FALSE(line.empty());
  EXPECT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1);  // one object per line
  const auto s = parse_json(line);
  EXPECT_EQ(s.fields().at("start_time").string_value(), "2026-11-21T14:52:07.123Z");
  EXPECT_EQ(s.fields().at("bytes_received").number_value(), 517);
  EXPECT_EQ(s.fields().at("duration").number_value(), 1234);
  EXPECT_EQ(s.fields().at("response_code").number_value(), 0);
  EXPECT_TRUE(s.fields().at("response_flags").has_null_value());
  EXPECT_EQ(s.fields().at("sni").string_value(), "a\"b\\c\nd\x01");
  EXPECT_EQ(s.fields().at("upstream_host").string_value(), "10.1.2.3:5000");
  EXPECT_EQ(s.fields().at("mixed").string_value(), "to 10.1.2.3:5000 via -");
}

TEST(FormatTest, JsonNestedLiteralsAndOmitEmpty) {
  format_config c = json({{"flags", "%RESPONSE_FLAGS%"}, {"sent", "%BYTES_SENT%"}});
  c.json.members.emplace_back("fixed", json_value{json_value::kind::literal, "true", {}});
  c.json.members.emplace_back(
      "upstream", json_value{json_value::kind::object, "", {{"host", json_value{json_value::kind::format_string, "%UPSTREAM_HOST%", {}}}}});
  c.omit_empty_values = true;
  const std::string line = render(c, routed_record());
  EXPECT_EQ(line, "{\"sent\":4096,\"fixed\":true,\"upstream\":{\"host\":\"10.1.2.3:5000\"}}\n");
  parse_json(line);
}

TEST(FormatTest, IstioDefaultJsonFormatParsesAndRenders) {
  // Istio's EnvoyJSONLogFormatIstio (accessLogEncoding: JSON).
  const std::string line = render(json({{"start_time", "%START_TIME%"},
                                        {"route_name", "%ROUTE_NAME%"},
                                        {"method", "%REQ(:METHOD)%"},
                                        {"path", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"},
                                        {"protocol", "%PROTOCOL%"},
                                        {"response_code", "%RESPONSE_CODE%"},
                                        {"response_flags", "%RESPONSE_FLAGS%"},
                                        {"response_code_details", "%RESPONSE_CODE_DETAILS%"},
                                        {"connection_termination_details", "%CONNECTION_TERMINATION_DETAILS%"},
                                        {"bytes_received", "%BYTES_RECEIVED%"},
                                        {"bytes_sent", "%BYTES_SENT%"},
                                        {"duration", "%DURATION%"},
                                        {"upstream_service_time", "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%"},
                                        {"x_forwarded_for", "%REQ(X-FORWARDED-FOR)%"},
                                        {"user_agent", "%REQ(USER-AGENT)%"},
                                        {"request_id", "%REQ(X-REQUEST-ID)%"},
                                        {"authority", "%REQ(:AUTHORITY)%"},
                                        {"upstream_host", "%UPSTREAM_HOST%"},
                                        {"upstream_cluster", "%UPSTREAM_CLUSTER_RAW%"},
                                        {"upstream_local_address", "%UPSTREAM_LOCAL_ADDRESS%"},
                                        {"downstream_local_address", "%DOWNSTREAM_LOCAL_ADDRESS%"},
                                        {"downstream_remote_address", "%DOWNSTREAM_REMOTE_ADDRESS%"},
                                        {"requested_server_name", "%REQUESTED_SERVER_NAME%"},
                                        {"upstream_transport_failure_reason", "%UPSTREAM_TRANSPORT_FAILURE_REASON%"}}),
                                  routed_record());
  const auto s = parse_json(line);
  EXPECT_EQ(s.fields().size(), 24u);
  EXPECT_EQ(s.fields().at("upstream_cluster").string_value(), "outbound_.5000_._.helloworld.sample.svc.cluster.local");
  EXPECT_EQ(s.fields().at("bytes_sent").number_value(), 4096);
  EXPECT_TRUE(s.fields().at("method").has_null_value());
}

TEST(FormatTest, NeedsOnlyWhatTheFormatUses) {
  std::string error;
  auto plain = formatter::compile(text("%BYTES_SENT% %UPSTREAM_HOST%"), error);
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->needs(), 0u);
  auto istio = formatter::compile(text(istio_text_format), error);
  ASSERT_TRUE(istio);
  EXPECT_EQ(istio->needs(), needs_downstream_local | needs_downstream_remote | needs_upstream_local);
}

}  // namespace
}  // namespace ewgw::accesslog
