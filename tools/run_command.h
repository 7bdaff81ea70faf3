// `shardserve run`: loads a model in this process and generates text for one prompt.
#ifndef SHARDSERVE_TOOLS_RUN_COMMAND_H_
#define SHARDSERVE_TOOLS_RUN_COMMAND_H_

namespace shardserve {

// Reads the run flags (see tools/shardserve_main.cc) and returns the process exit code.
int RunCommand();

}  // namespace shardserve

#endif  // SHARDSERVE_TOOLS_RUN_COMMAND_H_
