// `sextant execute` and `sextant profile` without sextant-runtime beside the binary (a build
// without the executor, or one that has not built it yet): one line saying how to get it,
// exit status 2. A copy of the binary in a folder of its own has no runtime beside it.
#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "tests/test_dir.h"

namespace fs = std::filesystem;

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(CliWithoutRuntime, ExecuteAndProfileSayHowToGetIt) {
  const fs::path dir = sextant::test_dir("cli_without_runtime");
  const fs::path copy = dir / "sextant";
  fs::copy_file(SEXTANT_BINARY, copy);
  ASSERT_FALSE(fs::exists(dir / "sextant-runtime"));
  for (const std::string verb : {"execute --plan plan.json --steps 3", "profile --name here"}) {
    const std::string cmd =
        "cd " + dir.string() + " && " + copy.string() + " " + verb + " >out 2>err";
    const int raw = std::system(cmd.c_str());
    ASSERT_TRUE(WIFEXITED(raw)) << verb;
    EXPECT_EQ(WEXITSTATUS(raw), 2) << verb;
    const std::string err = slurp(dir / "err");
    const std::string name = verb.substr(0, verb.find(' '));
    EXPECT_EQ(err.rfind("sextant: error: " + name + " needs sextant-runtime", 0), 0u) << err;
    EXPECT_NE(err.find("./scripts/build.sh sextant-runtime"), std::string::npos) << err;
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
    EXPECT_TRUE(slurp(dir / "out").empty());
    EXPECT_FALSE(fs::exists(dir / "sextant.db"));
  }
}

}  // namespace
