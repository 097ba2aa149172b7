// The spec format and the `symopt solve` command-line tool. The tool is found
// next to this test executable's build folder (<build>/apps/symopt); the
// example specs are read from SYMOPT_SOURCE_DIR (set by ctest) or, when run by
// hand, from the source tree relative to the working directory.
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "catch.h"
#include "symmetry/spec.h"
#include "symmetry_checks.h"

using namespace symopt;
namespace fs = std::filesystem;

namespace {

fs::path SourceDir() {
  if (const char* s = std::getenv("SYMOPT_SOURCE_DIR")) return s;
  for (fs::path p = fs::current_path(); !p.empty(); p = p.parent_path()) {
    if (fs::exists(p / "examples" / "specs")) return p;
    if (p == p.parent_path()) break;
  }
  return fs::current_path();
}

fs::path ToolPath() {
  const fs::path self = fs::read_symlink("/proc/self/exe");
  return self.parent_path().parent_path() / "apps" / "symopt";
}

struct RunResult {
  int status = -1;
  std::string output;  // stdout and stderr together
};

RunResult RunTool(const std::string& args) {
  const fs::path tool = ToolPath();
  INFO("the symopt tool must be built first: " << tool.string());
  REQUIRE(fs::exists(tool));
  RunResult r;
  const std::string cmd = "'" + tool.string() + "' " + args + " 2>&1";
  FILE* pipe = popen(cmd.c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::array<char, 4096> buf;
  std::size_t got;
  while ((got = fread(buf.data(), 1, buf.size(), pipe)) > 0)
    r.output.append(buf.data(), got);
  const int raw = pclose(pipe);
  r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  return r;
}

class TempDir {
 public:
  TempDir()
      : path_(fs::temp_directory_path() /
              ("symopt_cli_" + std::to_string(getpid()))) {
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  fs::path Write(const std::string& name, const std::string& text) const {
    fs::path p = path_ / name;
    std::ofstream(p) << text;
    return p;
  }

 private:
  fs::path path_;
};

}  // namespace

TEST_CASE("symopt solve reports the exact solution of the example specs",
          "[symmetry][cli]") {
  const fs::path specs = SourceDir() / "examples" / "specs";
  REQUIRE(fs::exists(specs));
  struct Expect {
    const char* file;
    std::int64_t ambient, dim, zeros;
    bool tie;
    int compatible;  // -1: no support given
  };
  const Expect expected[] = {
      {"rnn_shift.json", 30, 6, 0, true, -1},
      {"conv1d_window.json", 64, 3, 43, true, 1},
      {"downscale.json", 16, 8, 0, true, -1},
      {"c4_cross.json", 9, 2, 4, true, 1},
      {"c4_skew.json", 9, 1, 8, true, 0},
      {"d4_filter.json", 3200, 16 * 8 * 6, 0, true, -1},
      {"p4_gconv.json", 144, 36, 0, true, -1},
  };
  for (const Expect& e : expected) {
    INFO(e.file);
    const RunResult r =
        RunTool("solve --json --classes '" + (specs / e.file).string() + "'");
    INFO(r.output);
    REQUIRE(r.status == 0);
    const nlohmann::json j = nlohmann::json::parse(r.output);
    CHECK(j["ambient_size"] == e.ambient);
    CHECK(j["dim"] == e.dim);
    CHECK(j["num_zero"] == e.zeros);
    CHECK(j["is_tie"] == e.tie);
    CHECK(j["classes"].size() == static_cast<std::size_t>(e.ambient));
    if (e.compatible >= 0) {
      CHECK(j["compatibility"]["compatible"] == (e.compatible == 1));
    } else {
      CHECK_FALSE(j.contains("compatibility"));
    }
    // The same numbers from the library, and the classes are Solve's.
    const SolveSpec spec = LoadSolveSpec((specs / e.file).string());
    const Solution s = Solve(spec.problem);
    CHECK(j["dim"] == s.dim);
    CHECK(j["classes"].get<std::vector<std::int32_t>>() == s.ties.class_of);
    if (e.ambient <= 200) testing::CheckSolutionProperties(spec.problem, s, 77);
  }
  // Readable text mentions the verdicts.
  const RunResult text =
      RunTool("solve '" + (specs / "c4_skew.json").string() + "'");
  CHECK(text.status == 0);
  CHECK_THAT(text.output, Catch::Contains("NOT compatible"));
  CHECK_THAT(text.output, Catch::Contains("dim E:           1"));
}

TEST_CASE("malformed specs exit with status 2 and say what and where",
          "[symmetry][cli]") {
  TempDir dir;
  const std::string head =
      R"("output": [1], "input": [3, 4], "constraint": "invariance", )";
  struct Bad {
    const char* name;
    std::string text;
    const char* where;
    const char* what;
  };
  const Bad cases[] = {
      {"unknown_transform",
       "{" + head +
           R"("transforms": [{"type": "flip", "axis": 0}, {"type": "twist"}]})",
       "transforms[1].type",
       "unknown transformation \"twist\""},
      {"wrong_axis",
       "{" + head + R"("transforms": [{"type": "flip", "axis": 2}]})",
       "transforms[0].axis",
       "out of range"},
      {"non_square_rotation",
       "{" + head + R"("transforms": [{"type": "rotate90", "axes": [0, 1]}]})",
       "transforms[0].axes",
       "equal length"},
      {"shape_mismatch",
       R"({"output": [2], "input": [3], "constraint": "equivariance", "transforms": [{"type": "flip", "axis": 0}]})",
       "output",
       "equal shapes"},
      {"mask_mismatch",
       "{" + head +
           R"("transforms": [{"type": "flip", "axis": 0}], "support": {"type": "input_mask", "mask": [1, 0]}})",
       "support.mask",
       "expected 12"},
      {"group_not_closing",
       "{" + head +
           R"("transforms": [{"type": "shift", "axis": 1}], "group": {"kind": "cyclic", "order": 3}})",
       "group",
       "order 4"},
      {"partial_in_group",
       "{" + head +
           R"("transforms": [{"type": "shift", "axis": 1, "wrap": false}], "group": {"kind": "any"}})",
       "group",
       "not a permutation"},
      {"bad_json", "{" + head, "invalid JSON", ""},
      {"unknown_key",
       "{" + head + R"("transfroms": []})",
       "transfroms",
       "unknown key"},
      {"bad_gather",
       "{" + head +
           R"("transforms": [{"type": "permutation", "gather": [0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}]})",
       "transforms[0].gather",
       "not a permutation"},
      // The next three overflowed (or wrapped to another index) before the
      // sanitizer run (docs/testing.md).
      {"huge_shape",
       R"({"output": [1], "input": [4611686018427387904, 4], "constraint": "invariance", "transforms": [{"type": "flip", "axis": 1}]})",
       "input",
       "2^31 or more entries"},
      {"huge_dihedral",
       "{" + head +
           R"("transforms": [{"type": "flip", "axis": 0}], "group": {"kind": "dihedral", "n": 4611686018427387904}})",
       "group",
       "outside [0, 2^31]"},
      {"gather_past_int32",
       "{" + head +
           R"("transforms": [{"type": "permutation", "gather": [4294967297, 0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]}]})",
       "transforms[0].gather[0]",
       "index 4294967297 is out of range"},
  };
  for (const Bad& b : cases) {
    INFO(b.name);
    const fs::path p = dir.Write(std::string(b.name) + ".json", b.text);
    const RunResult r = RunTool("solve '" + p.string() + "'");
    INFO(r.output);
    CHECK(r.status == 2);
    CHECK_THAT(r.output, Catch::Contains(p.string()));
    CHECK_THAT(r.output, Catch::Contains(b.where));
    CHECK_THAT(r.output, Catch::Contains(b.what));
    // The library throws SpecError for the same text.
    CHECK_THROWS_AS(ParseSolveSpec(b.text, b.name), SpecError);
  }
  const RunResult missing =
      RunTool("solve '" +
              (dir.Write("x", "").parent_path() / "nope.json").string() + "'");
  CHECK(missing.status == 2);
  CHECK_THAT(missing.output, Catch::Contains("cannot open"));
}
