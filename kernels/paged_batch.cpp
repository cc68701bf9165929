#include "kernels/paged_batch.h"

namespace kuiper::kernels {
namespace {

void expect_on(const char* op, const char* name, const Tensor& t, DType dtype, Device device) {
  KUIPER_CHECK(!t.empty(), op, ": ", name, " is empty");
  KUIPER_CHECK(t.device() == device && t.dtype() == dtype, op, ": ", name, " is ", t.describe(),
               ", expected ", dtype_name(dtype), " on ", device_name(device));
}

}  // namespace

PagedBatchShape check_paged_batch(const char* op, const BatchRows& rows, const PagedCache& cache,
                                  int64_t kv_width, Device device) {
  PagedBatchShape s;
  s.n = rows.positions.numel();
  for (const auto& [name, t] : {std::pair{"positions", &rows.positions}, {"slots", &rows.slots},
                                {"row_seqs", &rows.row_seqs}}) {
    expect_on(op, name, *t, DType::kI32, device);
    KUIPER_CHECK(t->numel() == s.n, op, ": ", name, " is ", t->describe(), ", expected ", s.n,
                 " rows like positions");
  }
  expect_on(op, "seq_starts", rows.seq_starts, DType::kI32, device);
  expect_on(op, "block_tables", rows.block_tables, DType::kI32, device);
  KUIPER_CHECK(rows.block_tables.ndim() == 2, op, ": block_tables is ",
               rows.block_tables.describe(), ", expected [n_seqs, max_blocks]");
  s.n_seqs = rows.block_tables.dim(0);
  s.max_blocks = rows.block_tables.dim(1);
  KUIPER_CHECK(rows.seq_starts.numel() == s.n_seqs + 1, op, ": seq_starts is ",
               rows.seq_starts.describe(), ", expected n_seqs + 1 = ", s.n_seqs + 1, " entries");
  KUIPER_CHECK(rows.max_positions >= 0, op, ": max_positions ", rows.max_positions, " < 0");

  KUIPER_CHECK(cache.block_size > 0, op, ": block_size ", cache.block_size, " is not positive");
  const DType type = cache.k.dtype();
  KUIPER_CHECK(type == DType::kF32 || type == DType::kF16 || type == DType::kBF16, op,
               ": cache of ", dtype_name(type), ", expected fp32, fp16 or bf16");
  expect_on(op, "key cache", cache.k, type, device);
  expect_on(op, "value cache", cache.v, type, device);
  KUIPER_CHECK(cache.k.shape() == cache.v.shape() && cache.k.ndim() == 2 &&
                   cache.k.dim(1) == kv_width && cache.k.dim(0) % cache.block_size == 0,
               op, ": caches ", cache.k.describe(), " and ", cache.v.describe(),
               " are not both [num_blocks * ", cache.block_size, ", ", kv_width, "]");
  s.cache_rows = cache.k.dim(0);
  s.kv_width = kv_width;
  return s;
}

}  // namespace kuiper::kernels
