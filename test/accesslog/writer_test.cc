// The access log writer: records queued by workers become lines in a real file on the writer
// thread; a full queue drops and counts; filters; files that cannot be opened are refused.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "accesslog/writer.h"

namespace ewgw::accesslog {
namespace {

using namespace std::chrono_literals;

class WriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("ewgw_writer_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  logger_list one_logger(const std::string& path, const std::string& format, bool nr_filter = false) {
    logger_config c;
    c.name = "envoy.access_loggers.file";
    c.where = destination::file;
    c.path = path;
    c.format.type = format_config::kind::text;
    c.format.text = format;
    if (nr_filter) {
      c.has_filter = true;
      c.filter.flags = {"NR"};
    }
    return logger_list{std::make_shared<const std::vector<logger_config>>(std::vector<logger_config>{c})};
  }

  static std::string read_file(const std::filesystem::path& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  static std::unique_ptr<record> make_record(std::uint64_t id, std::uint32_t flags = 0) {
    auto r = std::make_unique<record>();
    r->connection_id = id;
    r->response_flags = flags;
    return r;
  }

  std::filesystem::path dir_;
};

TEST_F(WriterTest, LinesReachTheFileAndStopFlushes) {
  stats::registry registry(2);
  writer w({2, 16, std::chrono::hours(1)}, registry);  // only stop() drains
  std::string error;
  const auto path = dir_ / "access.log";
  auto set = w.build(one_logger(path, "id=%CONNECTION_ID% flags=%RESPONSE_FLAGS%\n"), error);
  ASSERT_TRUE(set) << error;
  std::thread producer([&] {  // worker 1 from another thread, as a real worker would
    for (std::uint64_t i = 0; i < 5; ++i) EXPECT_TRUE(w.submit(1, make_record(100 + i), nullptr, set));
  });
  producer.join();
  EXPECT_TRUE(w.submit(0, make_record(7, flag_bit(response_flag::upstream_overflow)), set, nullptr));
  w.stop();
  const std::string text = read_file(path);
  EXPECT_EQ(text, "id=7 flags=UO\nid=100 flags=-\nid=101 flags=-\nid=102 flags=-\nid=103 flags=-\nid=104 flags=-\n");
  EXPECT_EQ(registry.value("access_log.lines_written_total"), 6);
  EXPECT_EQ(registry.value("access_log.records_dropped_total"), 0);
  EXPECT_FALSE(w.submit(0, make_record(8), set, nullptr));  // after stop: dropped
}

TEST_F(WriterTest, FullQueueDropsAndCounts) {
  stats::registry registry(1);
  writer w({1, 4, std::chrono::hours(1)}, registry);
  std::string error;
  const auto path = dir_ / "access.log";
  auto set = w.build(one_logger(path, "%CONNECTION_ID%\n"), error);
  ASSERT_TRUE(set) << error;
  int accepted = 0;
  for (std::uint64_t i = 0; i < 10; ++i) accepted += w.submit(0, make_record(i), nullptr, set) ? 1 : 0;
  EXPECT_EQ(accepted, 4);
  EXPECT_EQ(registry.value("access_log.records_dropped_total"), 6);
  w.stop();
  EXPECT_EQ(read_file(path), "0\n1\n2\n3\n");
}

TEST_F(WriterTest, PeriodicDrainWritesWithoutStop) {
  stats::registry registry(1);
  writer w({1, 64, 10ms}, registry);
  std::string error;
  const auto path = dir_ / "access.log";
  auto set = w.build(one_logger(path, "%CONNECTION_ID%\n"), error);
  ASSERT_TRUE(set) << error;
  ASSERT_TRUE(w.submit(0, make_record(5), nullptr, set));
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (read_file(path).empty() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(read_file(path), "5\n");
}

TEST_F(WriterTest, ResponseFlagFilterLikeIstiosListenerLog) {
  stats::registry registry(1);
  writer w({1, 16, std::chrono::hours(1)}, registry);
  std::string error;
  const auto path = dir_ / "listener.log";
  auto set = w.build(one_logger(path, "%CONNECTION_ID% %RESPONSE_FLAGS%\n", true), error);
  ASSERT_TRUE(set) << error;
  w.submit(0, make_record(1), set, nullptr);
  w.submit(0, make_record(2, flag_bit(response_flag::no_route_found)), set, nullptr);
  w.submit(0, make_record(3, flag_bit(response_flag::upstream_connection_failure)), set, nullptr);
  w.stop();
  EXPECT_EQ(read_file(path), "2 NR\n");
}

TEST_F(WriterTest, TwoLogsOnePathShareTheFile) {
  stats::registry registry(1);
  writer w({1, 16, std::chrono::hours(1)}, registry);
  std::string error;
  const auto path = dir_ / "shared.log";
  auto a = w.build(one_logger(path, "listener %CONNECTION_ID%\n"), error);
  auto b = w.build(one_logger(path, "chain %CONNECTION_ID%\n"), error);
  ASSERT_TRUE(a && b) << error;
  w.submit(0, make_record(9), a, b);
  w.stop();
  EXPECT_EQ(read_file(path), "listener 9\nchain 9\n");
}

TEST_F(WriterTest, BadFormatOrUnopenableFileIsRefused) {
  stats::registry registry(1);
  writer w({1, 16, std::chrono::hours(1)}, registry);
  std::string error;
  EXPECT_FALSE(w.build(one_logger(dir_ / "x.log", "%NOT_AN_OPERATOR%"), error));
  EXPECT_EQ(error, "access log 'envoy.access_loggers.file': unknown command operator 'NOT_AN_OPERATOR' at position 0");
  EXPECT_FALSE(w.build(one_logger(dir_ / "no" / "such" / "dir.log", "%BYTES_SENT%"), error));
  EXPECT_NE(error.find("cannot open access log file"), std::string::npos) << error;
  EXPECT_NE(error.find("No such file or directory"), std::string::npos) << error;
  auto empty = w.build(logger_list{}, error);
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->loggers.empty());
}

}  // namespace
}  // namespace ewgw::accesslog
