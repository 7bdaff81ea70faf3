#include "worker/comm/tcp_kv_transport_reservation.h"

#include <cstdint>
#include <utility>

#include "absl/strings/str_cat.h"

namespace shardserve {
namespace {

std::string Range(int64_t begin, int64_t end) { return absl::StrCat("[", begin, ",", end, ")"); }

}  // namespace

absl::StatusOr<KvReservation> KvReservation::Create(uint64_t transfer_id,
                                                    const KvDestination& destination) {
  const auto error = [&](const std::string& what) {
    return absl::InvalidArgumentError(
        absl::StrCat("KV reservation for transfer ", transfer_id, ": ", what));
  };
  const KvDestination& d = destination;
  if (d.num_tokens <= 0 || d.num_tokens > INT32_MAX) {
    return error(absl::StrCat("num_tokens ", d.num_tokens));
  }
  if (d.layers.begin < 0 || d.layers.size() <= 0 || d.kv_heads.begin < 0 ||
      d.kv_heads.size() <= 0) {
    return error(absl::StrCat("layers ", Range(d.layers.begin, d.layers.end), " kv_heads ",
                              Range(d.kv_heads.begin, d.kv_heads.end)));
  }
  if (static_cast<int64_t>(d.layer_views.size()) != d.layers.size()) {
    return error(
        absl::StrCat(d.layer_views.size(), " layer views for ", d.layers.size(), " layers"));
  }
  const KvLayerView& first = d.layer_views[0];
  if (first.dtype != DType::kF32 && first.dtype != DType::kF16) {
    return error(absl::StrCat("KV cache dtype ", DTypeName(first.dtype), ", not f32 or f16"));
  }
  for (const KvLayerView& v : d.layer_views) {
    if (v.k == nullptr || v.v == nullptr || v.num_kv_heads != d.kv_heads.size() ||
        v.head_dim <= 0 || v.head_dim != first.head_dim || v.block_size <= 0 ||
        v.block_size != first.block_size || v.num_blocks != first.num_blocks ||
        v.dtype != first.dtype) {
      return error(absl::StrCat("layer views must share one shape and dtype with ",
                                d.kv_heads.size(), " KV heads and K, V memory"));
    }
  }
  const int64_t blocks_needed = (d.num_tokens + first.block_size - 1) / first.block_size;
  if (static_cast<int64_t>(d.block_ids.size()) < blocks_needed) {
    return error(absl::StrCat(d.block_ids.size(), " block ids for ", d.num_tokens,
                              " tokens of block size ", first.block_size));
  }
  for (int64_t i = 0; i < blocks_needed; ++i) {
    if (d.block_ids[i] < 0 || d.block_ids[i] >= first.num_blocks) {
      return error(
          absl::StrCat("block id ", d.block_ids[i], " outside [0,", first.num_blocks, ")"));
    }
  }
  return KvReservation(transfer_id, destination);
}

KvReservation::KvReservation(uint64_t transfer_id, const KvDestination& destination)
    : transfer_id_(transfer_id),
      destination_(destination),
      num_heads_(destination.kv_heads.size()),
      head_dim_(destination.layer_views[0].head_dim),
      dtype_(destination.layer_views[0].dtype),
      rows_expected_(destination.layers.size() * 2 * num_heads_ * destination.num_tokens) {
  claimed_.assign(static_cast<size_t>(rows_expected_), false);
}

int64_t KvReservation::RowIndex(int64_t layer_idx, int kind, int64_t head_idx,
                                int64_t token) const {
  return ((layer_idx * 2 + kind) * num_heads_ + head_idx) * destination_.num_tokens + token;
}

absl::Status KvReservation::Claim(const KvFrameHeader& h, IovecCursor* cursor) {
  const KvDestination& d = destination_;
  const auto error = [&](const std::string& what) {
    return absl::InvalidArgumentError(
        absl::StrCat("KV transfer ", transfer_id_, ": frame for layer ", h.layer,
                     (h.kind == 0 ? " K" : " V"), " heads ", Range(h.head_begin, h.head_end),
                     " tokens ", Range(h.token_begin, h.token_end), " ", what));
  };
  if (h.layer < d.layers.begin || h.layer >= d.layers.end) {
    return error(absl::StrCat("outside the reserved layers ", Range(d.layers.begin, d.layers.end)));
  }
  if (h.head_begin < d.kv_heads.begin || h.head_end > d.kv_heads.end) {
    return error(
        absl::StrCat("outside the reserved KV heads ", Range(d.kv_heads.begin, d.kv_heads.end)));
  }
  if (h.token_end > d.num_tokens) {
    return error(absl::StrCat("beyond the reserved ", d.num_tokens, " tokens"));
  }
  if (h.head_dim != head_dim_) {
    return error(absl::StrCat("has head_dim ", h.head_dim, ", the reservation ", head_dim_));
  }
  // Rows are copied byte for byte: rows of another dtype would be misread as this cache's
  // (garbage K and V that attention would use without any error), so refuse them.
  if (h.dtype != static_cast<uint16_t>(dtype_)) {
    return error(absl::StrCat("holds ", DTypeName(static_cast<DType>(h.dtype)),
                              " rows, but the reservation's KV cache is ", DTypeName(dtype_),
                              ": prefill and decode workers must use the same --kv_cache_dtype"));
  }
  const int64_t layer_idx = h.layer - d.layers.begin;
  for (int64_t head = h.head_begin; head < h.head_end; ++head) {
    const int64_t base = RowIndex(layer_idx, h.kind, head - d.kv_heads.begin, 0);
    for (int64_t t = h.token_begin; t < h.token_end; ++t) {
      if (claimed_[base + t]) return error(absl::StrCat("repeats head ", head, " token ", t));
    }
  }
  for (int64_t head = h.head_begin; head < h.head_end; ++head) {
    const int64_t base = RowIndex(layer_idx, h.kind, head - d.kv_heads.begin, 0);
    for (int64_t t = h.token_begin; t < h.token_end; ++t) claimed_[base + t] = true;
  }
  const KvLayerView& view = d.layer_views[layer_idx];
  char* const memory = static_cast<char*>(h.kind == 0 ? view.k : view.v);
  const int64_t head_bytes = head_dim_ * view.elem_bytes();
  const size_t token_bytes = (h.head_end - h.head_begin) * head_bytes;
  for (int64_t t = h.token_begin; t < h.token_end; ++t) {
    const int64_t slot =
        int64_t{d.block_ids[t / view.block_size]} * view.block_size + t % view.block_size;
    cursor->Add(memory + slot * view.row_bytes() + (h.head_begin - d.kv_heads.begin) * head_bytes,
                token_bytes);
  }
  return absl::OkStatus();
}

bool KvReservation::Received(const KvFrameHeader& h) {
  rows_received_ += int64_t{h.head_end - h.head_begin} * (h.token_end - h.token_begin);
  return rows_received_ == rows_expected_;
}

}  // namespace shardserve
