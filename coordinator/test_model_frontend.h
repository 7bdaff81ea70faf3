// The ModelFrontend of SmolLM2 for tests: its real tokenizer and chat template from the test
// fixtures (tests/tokenizer, tests/chat_template), no weights. Needs those fixtures as data.
//
//   std::unique_ptr<ModelFrontend> model = LoadSmolLm2Frontend(/*max_model_len=*/8192);
#ifndef SHARDSERVE_COORDINATOR_TEST_MODEL_FRONTEND_H_
#define SHARDSERVE_COORDINATOR_TEST_MODEL_FRONTEND_H_

#include <cstdint>
#include <memory>
#include <string>

#include "coordinator/model_frontend.h"

namespace shardserve {

// A runfile's contents; CHECK-fails when it cannot be read.
std::string ReadRunfile(const std::string& path);

// CHECK-fails when a fixture is missing or bad.
std::unique_ptr<ModelFrontend> LoadSmolLm2Frontend(int64_t max_model_len);

}  // namespace shardserve

#endif  // SHARDSERVE_COORDINATOR_TEST_MODEL_FRONTEND_H_
