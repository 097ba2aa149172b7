// symopt: command-line front end of the library.
//
//   symopt solve SPEC.json [--json] [--classes]
//
// Solves the constraint spec (docs/constraint_spec.md) exactly and prints the
// ambient size, dim E, whether E is a tie pattern, the number of zeroed
// entries, the group order when one is declared, the compatibility verdict
// when a support is given and, with --classes, the class id of every entry.
//
// Exit status: 0 on success; 2 for a malformed or unreadable spec (the message
// on stderr says what and where); 1 for any other failure.
#include <CLI/CLI.hpp>
#include <exception>
#include <iostream>
#include <string>

#include "symmetry/spec.h"

namespace {

int Run(int argc, char** argv) {
  CLI::App app{
      "symopt: exact weight sharing from invariances and equivariances"};
  app.require_subcommand(1);
  CLI::App* solve =
      app.add_subcommand("solve", "solve a constraint spec (JSON)");
  std::string spec_path;
  symopt::SolveSpecOptions options;
  solve->add_option("spec", spec_path, "the spec file (JSON)")->required();
  solve->add_flag("--json", options.json, "print the report as JSON");
  solve->add_flag(
      "--classes", options.classes, "print the class id of every entry");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  symopt::SolveSpec spec;
  try {
    spec = symopt::LoadSolveSpec(spec_path);
  } catch (const symopt::SpecError& e) {
    std::cerr << "symopt: malformed spec: " << e.what() << "\n";
    return 2;
  } catch (const symopt::FileError& e) {
    std::cerr << "symopt: " << e.what() << "\n";
    return 2;
  } catch (const symopt::InvalidArgument& e) {
    std::cerr << "symopt: malformed spec: " << spec_path << ": " << e.what()
              << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "symopt: " << e.what() << "\n";
    return 1;
  }
  try {
    std::cout << symopt::RunSolveSpec(spec, options);
  } catch (const std::exception& e) {
    std::cerr << "symopt: " << spec_path << ": " << e.what() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Whatever escapes Run (std::bad_alloc, say) still exits 1 with a message.
  try {
    return Run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "symopt: " << e.what() << "\n";
    return 1;
  }
}
