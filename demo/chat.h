#pragma once
#include "demo/options.h"
#include "demo/session.h"

namespace kuiper::demo {

// The --chat read-eval loop; returns the exit code.
int chat(const Options& options, Session& session);

}  // namespace kuiper::demo
