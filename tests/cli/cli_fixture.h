// The fixture of the CLI tests: each case runs the built `sextant` binary in a folder of its
// own and reads back its exit status, stdout and stderr.
#pragma once

#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "tests/test_dir.h"

namespace sextant_cli_test {

namespace fs = std::filesystem;

struct CliRun {
  int status = -1;
  std::string out, err;
};

class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = sextant::test_dir("cli_" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream(path(name)) << text;
    return path(name);
  }
  static std::string slurp(const std::string& p) {
    std::ifstream in(p);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  CliRun run(const std::string& args) const {
    const std::string cmd = "cd " + dir_.string() + " && " SEXTANT_BINARY " " + args + " >" +
                            path("stdout") + " 2>" + path("stderr");
    CliRun r;
    const int raw = std::system(cmd.c_str());
    r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
    r.out = slurp(path("stdout"));
    r.err = slurp(path("stderr"));
    return r;
  }
  // Exit 2, one line on stderr containing `fragment`, no store and no plan file written.
  void expect_refused(const std::string& args, const std::string& fragment) const {
    const CliRun r = run(args + " --db " + path("refused.db") + " --out " + path("refused-plan.json"));
    EXPECT_EQ(r.status, 2) << args << "\n" << r.err;
    EXPECT_NE(r.err.find(fragment), std::string::npos) << args << "\nstderr: " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
    EXPECT_FALSE(fs::exists(path("refused.db"))) << args;
    EXPECT_FALSE(fs::exists(path("refused-plan.json"))) << args;
  }
  fs::path dir_;
};

}  // namespace sextant_cli_test
