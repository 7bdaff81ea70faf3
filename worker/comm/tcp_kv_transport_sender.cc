#include "worker/comm/tcp_kv_transport_sender.h"

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace shardserve {
namespace {

absl::Status CheckSource(int64_t layer, const KvSource& s, IndexRange* tokens) {
  const auto error = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat("KV source of layer ", layer, ": ", what));
  };
  const KvLayerView& v = s.view;
  if (layer < 0 || layer > INT32_MAX) return error("layer out of range");
  if (v.dtype != DType::kF32 && v.dtype != DType::kF16) {
    return error(absl::StrCat("view of dtype ", DTypeName(v.dtype), ", not f32 or f16"));
  }
  if (v.k == nullptr || v.v == nullptr || v.block_size <= 0 || v.head_dim <= 0 ||
      v.head_dim > INT32_MAX || s.kv_heads.begin < 0 || s.kv_heads.size() <= 0 ||
      s.kv_heads.end > INT32_MAX || v.num_kv_heads != s.kv_heads.size()) {
    return error(absl::StrCat("view of ", v.num_kv_heads, " KV heads for kv_heads [",
                              s.kv_heads.begin, ",", s.kv_heads.end, ")"));
  }
  if (s.num_tokens <= 0 || s.num_tokens > INT32_MAX) {
    return error(absl::StrCat("num_tokens ", s.num_tokens));
  }
  *tokens = s.tokens.size() == 0 ? IndexRange{0, s.num_tokens} : s.tokens;
  if (tokens->begin < 0 || tokens->end > s.num_tokens || tokens->size() <= 0) {
    return error(absl::StrCat("tokens [", tokens->begin, ",", tokens->end, ") outside [0,",
                              s.num_tokens, ")"));
  }
  const int64_t blocks_needed = (s.num_tokens + v.block_size - 1) / v.block_size;
  if (static_cast<int64_t>(s.block_ids.size()) < blocks_needed) {
    return error(absl::StrCat(s.block_ids.size(), " block ids for ", s.num_tokens, " tokens"));
  }
  for (int64_t b = tokens->begin / v.block_size; b <= (tokens->end - 1) / v.block_size; ++b) {
    if (s.block_ids[b] < 0 || s.block_ids[b] >= v.num_blocks) {
      return error(absl::StrCat("block id ", s.block_ids[b], " outside [0,", v.num_blocks, ")"));
    }
  }
  return absl::OkStatus();
}

// Rows shorter than this that are not contiguous in the source are copied into one buffer
// first: the kernel's per-range cost makes thousands of small gathered ranges slower than a copy.
constexpr size_t kPackBelowBytes = 4096;

// Appends one data frame (header, then the rows of heads [h0, h1) for `tokens`) to `out`: the
// rows are gathered from the source blocks in place, or copied into `pack` when it is not null
// (payload_bytes of room). They travel in the cache's own dtype, which the header names so that
// a receiver whose cache holds another dtype refuses them instead of misreading the bytes.
// `header` and `pack` must stay live until the send is done.
void AddDataFrame(const KvSource& s, int kind, int64_t h0, int64_t h1, IndexRange tokens,
                  KvFrameHeader* header, char* pack, IovecCursor* out) {
  const KvLayerView& v = s.view;
  header->head_begin = static_cast<int32_t>(h0);
  header->head_end = static_cast<int32_t>(h1);
  header->token_begin = static_cast<int32_t>(tokens.begin);
  header->token_end = static_cast<int32_t>(tokens.end);
  header->head_dim = static_cast<int32_t>(v.head_dim);
  header->kind = static_cast<uint16_t>(kind);
  header->dtype = static_cast<uint16_t>(v.dtype);
  const size_t token_bytes = (h1 - h0) * v.head_dim * v.elem_bytes();
  header->payload_bytes = token_bytes * tokens.size();
  out->Add(header, sizeof(*header));
  const char* memory = static_cast<const char*>(kind == 0 ? v.k : v.v);
  for (int64_t t = tokens.begin; t < tokens.end; ++t) {
    const int64_t slot = int64_t{s.block_ids[t / v.block_size]} * v.block_size + t % v.block_size;
    const char* row =
        memory + slot * v.row_bytes() + (h0 - s.kv_heads.begin) * v.head_dim * v.elem_bytes();
    if (pack != nullptr) {
      std::memcpy(pack + (t - tokens.begin) * token_bytes, row, token_bytes);
    } else {
      out->Add(row, token_bytes);
    }
  }
  if (pack != nullptr) out->Add(pack, header->payload_bytes);
}

}  // namespace

TcpKvSender::~TcpKvSender() {
  for (const auto& [address, fd] : fds_) close(fd);
}

absl::Status TcpKvSender::Connect(const std::string& address) {
  return Connection(address).status();
}

absl::StatusOr<int> TcpKvSender::Connection(const std::string& address) {
  if (auto it = fds_.find(address); it != fds_.end()) {
    // An idle connection has nothing to read; anything readable is the receiver's close (or
    // garbage), so start afresh rather than lose the next frames into a dead socket.
    pollfd p{it->second, POLLIN, 0};
    if (poll(&p, 1, 0) == 0) return it->second;
    close(it->second);
    fds_.erase(it);
  }
  ASSIGN_OR_RETURN(const int fd, ConnectTcp(address, options_.io_timeout));
  fds_[address] = fd;
  return fd;
}

absl::Status TcpKvSender::Drop(const std::string& address, absl::Status error) {
  if (auto it = fds_.find(address); it != fds_.end()) {
    close(it->second);
    fds_.erase(it);
  }
  return error;
}

absl::Status TcpKvSender::SendLayer(uint64_t transfer_id, absl::Span<const KvPeer> peers,
                                    int64_t layer, const KvSource& source) {
  IndexRange tokens;
  RETURN_IF_ERROR(CheckSource(layer, source, &tokens));
  for (const KvPeer& peer : peers) {
    if (layer < peer.layers.begin || layer >= peer.layers.end) continue;
    const int64_t h0 = std::max(peer.kv_heads.begin, source.kv_heads.begin);
    const int64_t h1 = std::min(peer.kv_heads.end, source.kv_heads.end);
    if (h0 >= h1) continue;
    ASSIGN_OR_RETURN(const int fd, Connection(peer.address));
    const size_t token_bytes = (h1 - h0) * source.view.head_dim * source.view.elem_bytes();
    const bool pack = h1 - h0 < source.view.num_kv_heads && token_bytes < kPackBelowBytes;
    const size_t payload_bytes = token_bytes * tokens.size();
    if (pack && staging_.size() < 2 * payload_bytes) staging_.resize(2 * payload_bytes);
    KvFrameHeader headers[2];
    IovecCursor out;
    for (int kind = 0; kind < 2; ++kind) {
      headers[kind].type = static_cast<uint16_t>(KvFrameType::kData);
      headers[kind].transfer_id = transfer_id;
      headers[kind].layer = static_cast<int32_t>(layer);
      AddDataFrame(source, kind, h0, h1, tokens, &headers[kind],
                   pack ? staging_.data() + kind * payload_bytes : nullptr, &out);
    }
    if (absl::Status s = SendAll(fd, out, options_.io_timeout, peer.address); !s.ok()) {
      return Drop(peer.address, std::move(s));
    }
  }
  return absl::OkStatus();
}

absl::Status TcpKvSender::Finish(uint64_t transfer_id, absl::Span<const KvPeer> peers,
                                 const absl::Status& status) {
  absl::Status first_error;
  const auto note = [&first_error](absl::Status s) {
    if (first_error.ok()) first_error = std::move(s);
  };
  // Every peer is told before any ack is awaited, so the round trips overlap.
  std::vector<std::pair<std::string, int>> notified;
  absl::flat_hash_set<std::string> seen;
  const std::string message(status.message().substr(0, kKvMaxMessageBytes));
  for (const KvPeer& peer : peers) {
    if (!seen.insert(peer.address).second) continue;
    absl::StatusOr<int> fd = Connection(peer.address);
    if (!fd.ok()) {
      note(fd.status());
      continue;
    }
    KvFrameHeader h;
    h.type = static_cast<uint16_t>(KvFrameType::kFinish);
    h.transfer_id = transfer_id;
    h.status_code = static_cast<int32_t>(status.code());
    h.payload_bytes = message.size();
    IovecCursor out;
    out.Add(&h, sizeof(h));
    out.Add(message.data(), message.size());
    if (absl::Status s = SendAll(*fd, out, options_.io_timeout, peer.address); !s.ok()) {
      note(Drop(peer.address, std::move(s)));
      continue;
    }
    notified.emplace_back(peer.address, *fd);
  }
  for (const auto& [address, fd] : notified) {
    KvFrameHeader ack;
    absl::Status s =
        RecvAll(fd, &ack, sizeof(ack), -1, options_.io_timeout, options_.io_timeout, address);
    if (s.ok() && (!CheckFrameHeader(ack).ok() || ack.type != uint16_t(KvFrameType::kAck) ||
                   ack.transfer_id != transfer_id)) {
      s = absl::UnavailableError(absl::StrCat("KV receiver ", address, " sent a bad ack"));
    }
    std::string ack_message(s.ok() ? ack.payload_bytes : 0, '\0');
    if (s.ok() && !ack_message.empty()) {
      s = RecvAll(fd, ack_message.data(), ack_message.size(), -1, options_.io_timeout,
                  options_.io_timeout, address);
    }
    if (!s.ok()) {
      note(Drop(address,
                absl::UnavailableError(absl::StrCat("no ack for KV transfer ", transfer_id,
                                                    " from ", address, ": ", s.message()))));
      continue;
    }
    const absl::Status verdict = FrameStatus(ack, ack_message);
    if (status.ok() && !verdict.ok()) {
      note(absl::Status(verdict.code(),
                        absl::StrCat("KV receiver ", address, ": ", verdict.message())));
    }
  }
  return first_error;
}

}  // namespace shardserve
