#pragma once
#include "kuiper/model/config.h"
#include "kuiper/tensor/tensor.h"

namespace kuiper {

// The rotary angles of every position up to `max_seq_len`: fp32 [max_seq_len, head_dim / 2, 2]
// holding (cos, sin), with rope theta and Llama 3 frequency scaling taken from the config.
Tensor make_rope_table(const ModelConfig& config, int max_seq_len);

}  // namespace kuiper
