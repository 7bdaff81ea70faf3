// The frames of the TCP KV transport and the bounded socket I/O both of its ends use.
//
// A connection carries frames from one prefill rank (the sender) to one decode rank (the
// receiver); the receiver answers each kFinish with one kAck on the same connection.
//
//   kData    one layer's K or V rows of heads [head_begin, head_end) for tokens
//            [token_begin, token_end): payload [tokens, heads, head_dim] of `dtype` (the
//            sender's KV cache dtype, F32 or F16: rows are moved as they are stored, never
//            converted, so a receiver whose cache has another dtype refuses the frame)
//   kFinish  the sender is done with the transfer: status_code, payload = status message
//   kAck     the receiver's verdict on what that sender sent: status_code, payload = message
//
// Integers and floats travel in the hosts' native byte order, which must be little-endian on
// both ends (every platform the project builds for is).
#ifndef SHARDSERVE_WORKER_COMM_TCP_KV_TRANSPORT_WIRE_H_
#define SHARDSERVE_WORKER_COMM_TCP_KV_TRANSPORT_WIRE_H_

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "kernels/dtype.h"

namespace shardserve {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the KV wire format is little-endian");

inline constexpr uint32_t kKvFrameMagic = 0x3156534b;  // "KSV1"
// 2: data frames carry their rows' dtype (version 1 rows were always F32).
inline constexpr uint16_t kKvFrameVersion = 2;
// Sanity bounds that let a receiver reject garbage before reading a payload.
inline constexpr uint64_t kKvMaxPayloadBytes = uint64_t{1} << 32;
inline constexpr uint64_t kKvMaxMessageBytes = 64 << 10;

// Bounds of both ends' socket operations.
struct TcpKvOptions {
  // Longest a connect, or a send or receive in the middle of a frame, may make no progress
  // before the peer is taken for dead; also bounds the wait for each kAck.
  absl::Duration io_timeout = absl::Seconds(10);
};

enum class KvFrameType : uint16_t { kData = 1, kFinish = 2, kAck = 3 };

struct KvFrameHeader {
  uint32_t magic = kKvFrameMagic;
  uint16_t version = kKvFrameVersion;
  uint16_t type = 0;  // KvFrameType
  uint64_t transfer_id = 0;
  int32_t layer = 0;  // of the model's layers
  uint16_t kind = 0;  // 0: K, 1: V
  // kData: the rows' element type as a DType value (GGUF type ids, which never change): F32 (0)
  // or F16 (1). Unused by kFinish and kAck.
  uint16_t dtype = 0;
  int32_t head_begin = 0;
  int32_t head_end = 0;
  int32_t token_begin = 0;
  int32_t token_end = 0;
  int32_t head_dim = 0;
  int32_t status_code = 0;  // absl::StatusCode of kFinish and kAck
  uint64_t payload_bytes = 0;
};
static_assert(sizeof(KvFrameHeader) == 56, "KvFrameHeader must have no padding");
static_assert(static_cast<uint32_t>(DType::kF32) == 0 && static_cast<uint32_t>(DType::kF16) == 1,
              "the wire's dtype values are the GGUF type ids");

// Bytes of one element of a data frame's `dtype`: 4 for F32, 2 for F16, 0 for any other value.
int64_t KvWireElemBytes(uint16_t dtype);

// Structural checks that need no reservation: magic, version, type, a known dtype, and a payload
// size that matches the frame's ranges and dtype. A failure means the stream cannot be trusted
// any further.
absl::Status CheckFrameHeader(const KvFrameHeader& h);

// The Status a kFinish or kAck frame carries.
absl::Status FrameStatus(const KvFrameHeader& h, const std::string& message);

// An ordered list of memory ranges that adjacent ranges are merged into, consumed front to back
// by partial sends and receives.
class IovecCursor {
 public:
  void Add(const void* data, size_t bytes);
  bool done() const { return index_ == iov_.size(); }
  size_t remaining_bytes() const { return remaining_; }
  // The next up to IOV_MAX ranges, starting at the cursor.
  iovec* window() { return iov_.data() + index_; }
  int window_size() const;
  void Advance(size_t bytes);
  // Copies `bytes` (at most remaining_bytes()) from `src` into the ranges at the cursor and
  // advances past them.
  void CopyIn(const char* src, size_t bytes);
  size_t num_ranges() const { return iov_.size(); }

 private:
  std::vector<iovec> iov_;
  size_t index_ = 0;
  size_t remaining_ = 0;
};

// "host:port" -> (host, port).
absl::Status SplitHostPort(const std::string& address, std::string* host, int* port);

// A listening socket on host:port (port 0: a free one); returns the fd and sets `address` to the
// host:port actually bound.
absl::StatusOr<int> ListenTcp(const std::string& host, int port, std::string* address);

// A non-blocking connected socket with TCP_NODELAY, or UNAVAILABLE naming `address` when the peer
// refuses or does not answer within `timeout`.
absl::StatusOr<int> ConnectTcp(const std::string& address, absl::Duration timeout);

// Makes `fd` non-blocking with TCP_NODELAY (for accepted sockets).
absl::Status ConfigureSocket(int fd);

// Waits until `fd` is readable. OK when it is; DEADLINE_EXCEEDED after `timeout`
// (absl::InfiniteDuration() waits forever); CANCELLED once `wake_fd` (-1: none) is readable.
absl::Status WaitReadable(int fd, int wake_fd, absl::Duration timeout);

// Sends everything under `cursor` on non-blocking `fd`. UNAVAILABLE naming `peer` when the
// connection fails or no byte can be sent for `stall_timeout`.
absl::Status SendAll(int fd, IovecCursor& cursor, absl::Duration stall_timeout,
                     const std::string& peer);

// Receives exactly `bytes` into `data` from non-blocking `fd`. The first byte may take
// `first_byte_timeout`, each later one `stall_timeout`. Errors: OUT_OF_RANGE when the peer closed
// the connection before the first byte (a clean end), UNAVAILABLE naming `peer` when it closed or
// failed later or stalled, DEADLINE_EXCEEDED when no first byte came, CANCELLED on `wake_fd`.
absl::Status RecvAll(int fd, void* data, size_t bytes, int wake_fd,
                     absl::Duration first_byte_timeout, absl::Duration stall_timeout,
                     const std::string& peer);

// One non-blocking receive into the cursor's window. Returns bytes received (0: none available
// now), or UNAVAILABLE naming `peer` when the connection closed or failed.
absl::StatusOr<size_t> RecvSome(int fd, IovecCursor& cursor, const std::string& peer);

}  // namespace shardserve

#endif  // SHARDSERVE_WORKER_COMM_TCP_KV_TRANSPORT_WIRE_H_
