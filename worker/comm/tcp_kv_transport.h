// The KV transport over TCP (worker/kv_transport.h): works across hosts, and on one host over
// loopback, which the tests and the benchmark use.
//
//   decode rank:   TcpKvReceiver (tcp_kv_transport_receiver.h) listens; Expect, Wait, Cancel
//   prefill rank:  TcpKvSender (tcp_kv_transport_sender.h) connects; SendLayer, Finish
//
// On the wire (tcp_kv_transport_wire.h) each prefill rank keeps one connection per decode rank.
// For every layer it sends a K frame and a V frame per decode rank that owns the layer and some
// of its heads: a fixed header (magic, transfer id, layer, K/V, dtype, head range, token range,
// head_dim, payload size) followed by the rows [tokens, heads, head_dim] of the common heads, in
// the sender's KV cache dtype (F32 or F16, as stored: a receiver whose cache has another dtype
// fails the transfer rather than reinterpret the bytes).
// Finish sends a kFinish frame carrying the prefill rank's status to each decode rank, which
// answers with a kAck carrying its verdict on everything that connection sent for the transfer.
// The receiver validates every frame against its reservation (tcp_kv_transport_reservation.h)
// before any of the payload is written.
#ifndef SHARDSERVE_WORKER_COMM_TCP_KV_TRANSPORT_H_
#define SHARDSERVE_WORKER_COMM_TCP_KV_TRANSPORT_H_

#include "worker/comm/tcp_kv_transport_receiver.h"  // IWYU pragma: export
#include "worker/comm/tcp_kv_transport_sender.h"    // IWYU pragma: export

#endif  // SHARDSERVE_WORKER_COMM_TCP_KV_TRANSPORT_H_
