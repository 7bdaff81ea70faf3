#include "worker/worker_process.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "coordinator/shard_assignment.h"
#include "glog/logging.h"
#include "grpcpp/grpcpp.h"
#include "model/model_fingerprint.h"
#include "model/model_resolver.h"
#include "model/shard_spec.h"
#include "worker/comm/gloo_communicator.h"
#include "worker/comm/grpc_store.h"
#include "worker/comm/shm_communicator.h"

namespace shardserve {

namespace {

// Each GetAssignment long poll; the worker polls again until the plan places it.
constexpr absl::Duration kAssignmentPoll = absl::Seconds(10);

// The one place where this client's grpc::Status becomes an absl::Status.
absl::Status FromGrpc(const grpc::Status& status, absl::string_view what) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      absl::StrCat(what, ": ", status.error_message()));
}

// Bytes of `rows` of the first dimension of `view`.
int64_t RowBytes(const TensorView& view, int64_t rows) {
  return view.dim(0) == 0 ? 0 : view.nbytes() / view.dim(0) * rows;
}

// Bytes of `cols` of the last dimension; for block-quantized rows a proportional share.
int64_t ColumnBytes(const TensorView& view, int64_t cols) {
  return view.cols() == 0 ? 0 : view.nbytes() * cols / view.cols();
}

// The part of tensor `name` ([out, in], canonical name) that `spec` holds, in bytes.
// Megatron split: projections into heads or columns are sliced by rows, projections out of them
// by columns; norms and routers are replicated; experts are held whole or not at all under EP.
absl::StatusOr<int64_t> HeldBytes(const WeightSource& weights, const ModelConfig& config,
                                  const ShardSpec& spec, const std::string& name) {
  ASSIGN_OR_RETURN(TensorView view, weights.Get(name));
  const bool embedding_here =
      spec.first_stage() || (spec.last_stage() && config.tie_word_embeddings);
  if (name == "token_embd") return embedding_here ? RowBytes(view, spec.vocab.size()) : 0;
  if (name == "output") return spec.last_stage() ? RowBytes(view, spec.vocab.size()) : 0;
  if (name == "output_norm") return spec.last_stage() ? view.nbytes() : 0;
  if (!absl::StartsWith(name, "blk.")) return view.nbytes();

  std::vector<std::string> parts = absl::StrSplit(name, absl::MaxSplits('.', 2));
  int64_t layer = 0;
  if (parts.size() != 3 || !absl::SimpleAtoi(parts[1], &layer)) {
    return absl::InternalError(absl::StrCat("unexpected tensor name ", name));
  }
  if (layer < spec.layers.begin || layer >= spec.layers.end) return 0;
  std::string rest = parts[2];
  const int64_t q_rows = spec.q_heads.size() * config.head_dim;
  const int64_t kv_rows = spec.kv_heads.size() * config.head_dim;
  // Routed experts: "ffn_gate.E", "ffn_up.E", "ffn_down.E".
  std::vector<std::string> expert = absl::StrSplit(rest, '.');
  int64_t e = 0;
  if (expert.size() == 2 && absl::SimpleAtoi(expert[1], &e)) {
    if (e < spec.experts.begin || e >= spec.experts.end) return 0;
    if (expert[0] == "ffn_down") return ColumnBytes(view, spec.expert_columns.size());
    return RowBytes(view, spec.expert_columns.size());
  }
  if (rest == "attn_q" || rest == "attn_q.bias") {
    return view.ndim == 1 ? ColumnBytes(view, q_rows) : RowBytes(view, q_rows);
  }
  if (rest == "attn_k" || rest == "attn_v" || rest == "attn_k.bias" || rest == "attn_v.bias") {
    return view.ndim == 1 ? ColumnBytes(view, kv_rows) : RowBytes(view, kv_rows);
  }
  if (rest == "attn_output") return ColumnBytes(view, q_rows);
  if (rest == "attn_q_norm" && view.cols() != config.head_dim) return ColumnBytes(view, q_rows);
  if (rest == "attn_k_norm" && view.cols() != config.head_dim) return ColumnBytes(view, kv_rows);
  if (rest == "ffn_gate" || rest == "ffn_up") return RowBytes(view, spec.mlp_columns.size());
  if (rest == "ffn_down") return ColumnBytes(view, spec.mlp_columns.size());
  if (rest == "ffn_gate_shexp" || rest == "ffn_up_shexp") {
    return RowBytes(view, spec.shared_expert_columns.size());
  }
  if (rest == "ffn_down_shexp") return ColumnBytes(view, spec.shared_expert_columns.size());
  return view.nbytes();  // norms, the router, the shared expert's gate: replicated
}

absl::Status SameSpec(const ShardSpec& got, const ShardSpec& want) {
  if (got.kv_heads == want.kv_heads && got.q_heads == want.q_heads &&
      got.mlp_columns == want.mlp_columns && got.experts == want.experts &&
      got.expert_columns == want.expert_columns &&
      got.shared_expert_columns == want.shared_expert_columns && got.layers == want.layers &&
      got.vocab == want.vocab) {
    return absl::OkStatus();
  }
  return absl::FailedPreconditionError(absl::StrCat("the assignment (", got.DebugString(),
                                                    ") does not fit this model file (",
                                                    want.DebugString(), ")"));
}

// ===== LoadShard =====
// Opens the weights, checks that the coordinator's assignment is the shard this model file gives
// for the same ranks, and returns the bytes of the tensor rows and columns the shard holds. The
// Decoder over this shard needs the group's communicators, so it is built after JoinGroup
// (WorkerProcess::Serve, GroupEngine::Create).
absl::StatusOr<int64_t> LoadShard(const std::string& path, const v1::ShardAssignment& assignment,
                                  std::unique_ptr<WeightSource>* weights) {
  ASSIGN_OR_RETURN(*weights, OpenWeightSource(path));
  const ModelConfig& config = (*weights)->config();
  const ShardSpec spec = ShardSpecFromProto(assignment);
  RETURN_IF_ERROR(ValidateLayout(config, spec.layout));
  if (spec.tp_rank < 0 || spec.tp_rank >= spec.layout.tp_size || spec.pp_rank < 0 ||
      spec.pp_rank >= spec.layout.pp_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("assignment ranks out of range: ", spec.DebugString()));
  }
  ASSIGN_OR_RETURN(ShardSpec expected,
                   MakeShardSpec(config, spec.layout, spec.tp_rank, spec.pp_rank));
  RETURN_IF_ERROR(SameSpec(spec, expected));
  int64_t total = 0;
  for (const ExpectedTensor& tensor : RequiredTensors(config)) {
    ASSIGN_OR_RETURN(int64_t bytes, HeldBytes(**weights, config, spec, tensor.name));
    total += bytes;
  }
  return total;
}

// A name for the group's shared-memory segment that no other group on the host uses: random,
// chosen by the leader and handed to the other ranks through the rendezvous store.
std::string RandomShmName(int group_id) {
  std::random_device entropy;
  return absl::StrCat("ss_g", group_id, "_", getpid(), "_", entropy(), entropy());
}

}  // namespace

WorkerProcess::WorkerProcess(WorkerOptions options) : options_(std::move(options)) {
  channel_ = grpc::CreateChannel(options_.coordinator, grpc::InsecureChannelCredentials());
  stub_ = v1::ClusterService::NewStub(channel_);
}

WorkerProcess::~WorkerProcess() = default;

std::unique_ptr<grpc::ClientContext> WorkerProcess::Context(absl::Duration timeout) const {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  // Workers may start before the coordinator listens: wait for it within the deadline.
  context->set_wait_for_ready(true);
  return context;
}

absl::StatusOr<std::string> WorkerProcess::ModelPath() {
  if (!options_.model.empty()) return ResolveModel(options_.model);
  v1::GetPlanReply reply;
  auto context = Context(options_.rpc_timeout);
  RETURN_IF_ERROR(FromGrpc(stub_->GetPlan(context.get(), v1::GetPlanRequest(), &reply),
                           absl::StrCat("coordinator ", options_.coordinator)));
  return reply.model_path();
}

absl::Status WorkerProcess::Register(const std::string& path) {
  ASSIGN_OR_RETURN(std::string fingerprint, ModelFingerprint(path));
  info_.set_host(options_.host);
  info_.set_role(options_.role);
  info_.set_device(options_.device);
  info_.set_num_threads(options_.num_threads);
  info_.set_model_path(path);
  info_.set_model_fingerprint(fingerprint);
  v1::RegisterRequest request;
  *request.mutable_worker() = info_;
  v1::RegisterReply reply;
  auto context = Context(options_.rpc_timeout);
  RETURN_IF_ERROR(FromGrpc(stub_->Register(context.get(), request, &reply), "register"));
  info_.set_worker_id(reply.worker_id());
  if (reply.heartbeat_interval_ms() > 0) {
    heartbeat_interval_ = absl::Milliseconds(reply.heartbeat_interval_ms());
  }
  LOG(INFO) << "registered as " << reply.worker_id() << " with " << options_.coordinator
            << " (model " << path << ", fingerprint " << fingerprint.substr(0, 12) << ")";
  return absl::OkStatus();
}

void WorkerProcess::HeartbeatLoop(absl::Duration interval, absl::Notification* quit) {
  bool warned = false;
  while (!quit->WaitForNotificationWithTimeout(interval)) {
    v1::HeartbeatRequest request;
    request.set_worker_id(info_.worker_id());
    {
      absl::MutexLock lock(&mu_);
      request.set_resident_bytes(resident_bytes_);
    }
    v1::HeartbeatReply reply;
    grpc::ClientContext context;
    // No wait_for_ready: a missed beat is retried next interval rather than queued.
    context.set_deadline(absl::ToChronoTime(absl::Now() + std::max(interval, absl::Seconds(1))));
    const grpc::Status status = stub_->Heartbeat(&context, request, &reply);
    if (status.error_code() == grpc::StatusCode::NOT_FOUND) {
      absl::MutexLock lock(&mu_);
      dead_ = FromGrpc(status, "the coordinator dropped this worker");
      return;
    }
    if (!status.ok() && !warned) {
      LOG(WARNING) << "heartbeat failed (will retry): " << status.error_message();
    }
    warned = !status.ok();
  }
}

absl::StatusOr<v1::GetAssignmentReply> WorkerProcess::AwaitAssignment(absl::Notification* stop) {
  std::string last_reason;
  while (!stop->HasBeenNotified()) {
    {
      absl::MutexLock lock(&mu_);
      if (!dead_.ok()) return dead_;
    }
    v1::GetAssignmentRequest request;
    request.set_worker_id(info_.worker_id());
    request.set_wait_timeout_ms(absl::ToInt64Milliseconds(kAssignmentPoll));
    v1::GetAssignmentReply reply;
    auto context = Context(kAssignmentPoll + options_.rpc_timeout);
    const grpc::Status status = stub_->GetAssignment(context.get(), request, &reply);
    if (status.ok()) return reply;
    if (status.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED &&
        status.error_code() != grpc::StatusCode::UNAVAILABLE) {
      return FromGrpc(status, "get assignment");
    }
    if (status.error_message() != last_reason) {
      LOG(INFO) << "waiting for an assignment: " << status.error_message();
      last_reason = status.error_message();
    }
  }
  return absl::CancelledError("stopped while waiting for an assignment");
}

absl::Status WorkerProcess::JoinGroup(const v1::GetAssignmentReply& reply) {
  const v1::EngineGroup& group = reply.group();
  const int rank = reply.assignment().group_rank();
  const int world_size = group.worker_ids_size();
  auto store_for = [&](const std::string& part) {
    GrpcStore::Options store_options;
    store_options.prefix = absl::StrCat(group.rendezvous_prefix(), part);
    store_options.default_wait = options_.group_timeout;
    return std::make_unique<GrpcStore>(channel_, store_options);
  };
  GlooOptions gloo;
  gloo.hostname = options_.host;
  gloo.timeout = options_.group_timeout;
  std::unique_ptr<GrpcStore> control_store = store_for("control/");
  ASSIGN_OR_RETURN(control_, GlooCommunicator::Create(*control_store, rank, world_size, gloo));

  bool one_host = absl::StartsWith(options_.device, "cpu");
  for (const v1::WorkerInfo& peer : reply.peers()) one_host &= peer.host() == options_.host;
  // The decoder's device groups: tensor parallelism within a stage, pipeline hand-offs along
  // one tp rank. Each has its own store namespace (and its own shared-memory segment).
  const ShardSpec spec = ShardSpecFromProto(reply.assignment());
  if (spec.layout.tp_size > 1) {
    ASSIGN_OR_RETURN(
        tp_, JoinDeviceGroup(absl::StrCat(group.rendezvous_prefix(), "tp", spec.pp_rank, "/"),
                             group.id(), spec.tp_rank, spec.layout.tp_size, one_host));
  }
  if (spec.layout.pp_size > 1) {
    ASSIGN_OR_RETURN(
        pp_, JoinDeviceGroup(absl::StrCat(group.rendezvous_prefix(), "pp", spec.tp_rank, "/"),
                             group.id(), spec.pp_rank, spec.layout.pp_size, one_host));
  }

  // Sanity check: every rank contributes rank + 1, so each element must sum to n(n+1)/2.
  for (Communicator* comm : {control_.get(), tp_.get(), pp_.get()}) {
    if (comm == nullptr) continue;
    RETURN_IF_ERROR(comm->Barrier());
    float values[4];
    for (float& v : values) v = static_cast<float>(comm->rank() + 1);
    RETURN_IF_ERROR(comm->AllReduceSum(TensorView::Cpu(values, DType::kF32, {4})));
    const int n = comm->world_size();
    const float want = n * (n + 1) / 2.0f;
    for (float v : values) {
      if (v != want) {
        return absl::InternalError(
            absl::StrCat(comm->backend(), " all-reduce check gave ", v, ", expected ", want));
      }
    }
  }
  LOG(INFO) << "joined group " << group.id() << " as rank " << rank << " of " << world_size
            << " (control " << control_->backend() << ", device "
            << (tp_   ? tp_->backend()
                : pp_ ? pp_->backend()
                      : "none")
            << ")";

  RETURN_IF_ERROR(SetUpKvTransport(reply));
  GroupComms comms;
  comms.kv_receiver = kv_receiver_.get();
  comms.kv_sender = kv_sender_.get();
  comms.control = control_.get();
  comms.decoder.tp = tp_.get();
  comms.decoder.pp = pp_.get();
  comms.decoder.moe_combine =
      spec.layout.moe_all_to_all ? MoeCombine::kAllToAll : MoeCombine::kAllReduce;
  EngineOptions engine_options;
  engine_options.num_threads = options_.num_threads;
  engine_options.kv_cache_bytes = options_.kv_cache_bytes;
  engine_options.kv_cache_dtype = options_.kv_cache_dtype;
  ASSIGN_OR_RETURN(engine_, GroupEngine::Create(weights_.get(), spec, comms, engine_options));
  return absl::OkStatus();
}

absl::Status WorkerProcess::SetUpKvTransport(const v1::GetAssignmentReply& reply) {
  TcpKvOptions kv_options;
  // A stalled peer must fail the transfer well before the group's collectives time out.
  kv_options.io_timeout = std::min(absl::Seconds(10), options_.group_timeout / 3);
  if (options_.role == v1::POOL_ROLE_PREFILL) {
    kv_sender_ = std::make_unique<TcpKvSender>(kv_options);
    return absl::OkStatus();
  }
  if (options_.role != v1::POOL_ROLE_DECODE) return absl::OkStatus();
  ASSIGN_OR_RETURN(kv_receiver_, TcpKvReceiver::Create(options_.host, 0, kv_options));
  const ShardSpec spec = ShardSpecFromProto(reply.assignment());
  v1::KvPeer me;
  me.set_address(kv_receiver_->address());
  me.set_layer_begin(static_cast<int32_t>(spec.layers.begin));
  me.set_layer_end(static_cast<int32_t>(spec.layers.end));
  me.set_kv_head_begin(static_cast<int32_t>(spec.kv_heads.begin));
  me.set_kv_head_end(static_cast<int32_t>(spec.kv_heads.end));
  GrpcStore::Options store_options;
  store_options.prefix = absl::StrCat(reply.group().rendezvous_prefix(), "kv/");
  store_options.default_wait = options_.group_timeout;
  GrpcStore store(channel_, store_options);
  const int rank = reply.assignment().group_rank();
  RETURN_IF_ERROR(store.Set(absl::StrCat("rank", rank), me.SerializeAsString()));
  LOG(INFO) << "receiving KV at " << me.address();
  if (rank != 0) return absl::OkStatus();
  kv_peers_.clear();
  for (int r = 0; r < reply.group().worker_ids_size(); ++r) {
    ASSIGN_OR_RETURN(std::string bytes, store.Get(absl::StrCat("rank", r), options_.group_timeout));
    if (!kv_peers_.emplace_back().ParseFromString(bytes)) {
      return absl::InternalError(absl::StrCat("unreadable KV receiver of rank ", r));
    }
  }
  prefill_client_ = std::make_unique<GrpcPrefillClient>(options_.kv_transfer_timeout);
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Communicator>> WorkerProcess::JoinDeviceGroup(
    const std::string& prefix, int group_id, int rank, int world_size, bool one_host) {
  GrpcStore::Options store_options;
  store_options.prefix = prefix;
  store_options.default_wait = options_.group_timeout;
  GrpcStore store(channel_, store_options);
  if (!one_host) {
    GlooOptions gloo;
    gloo.hostname = options_.host;
    gloo.timeout = options_.group_timeout;
    ASSIGN_OR_RETURN(auto comm, GlooCommunicator::Create(store, rank, world_size, gloo));
    return std::unique_ptr<Communicator>(std::move(comm));
  }
  std::string name;
  if (rank == 0) {
    name = RandomShmName(group_id);
    RETURN_IF_ERROR(store.Set("shm_name", name));
  } else {
    ASSIGN_OR_RETURN(name, store.Get("shm_name", options_.group_timeout));
  }
  ShmOptions shm;
  shm.timeout = options_.group_timeout;
  ASSIGN_OR_RETURN(auto comm, ShmCommunicator::Create(name, rank, world_size, shm));
  return std::unique_ptr<Communicator>(std::move(comm));
}

absl::Status WorkerProcess::ReportReady(int64_t epoch, const absl::Status& outcome) {
  v1::ReportReadyRequest request;
  request.set_worker_id(info_.worker_id());
  request.set_plan_epoch(epoch);
  if (!outcome.ok()) request.set_error(outcome.ToString());
  {
    absl::MutexLock lock(&mu_);
    request.set_resident_bytes(resident_bytes_);
  }
  v1::ReportReadyReply reply;
  auto context = Context(options_.rpc_timeout);
  return FromGrpc(stub_->ReportReady(context.get(), request, &reply), "report ready");
}

absl::Status WorkerProcess::Run(absl::Notification* stop) {
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(absl::StrCat("0.0.0.0:", options_.service_port),
                           grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service_);
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || port == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve WorkerService on port ", options_.service_port));
  }
  info_.set_port(port);
  LOG(INFO) << "WorkerService listening on port " << port;
  ASSIGN_OR_RETURN(std::string path, ModelPath());
  RETURN_IF_ERROR(Register(path));
  absl::Notification quit;
  std::thread heartbeat([this, &quit] { HeartbeatLoop(heartbeat_interval_, &quit); });
  absl::Status status = Serve(path, stop);
  service_.SetEngine(nullptr, "this worker is shutting down");
  ShutdownServer();
  quit.Notify();
  heartbeat.join();
  return status;
}

void WorkerProcess::ShutdownServer() {
  if (server_shut_down_) return;
  server_shut_down_ = true;
  server_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
}

absl::Status WorkerProcess::Dead() {
  absl::MutexLock lock(&mu_);
  return dead_;
}

absl::Status WorkerProcess::Serve(const std::string& path, absl::Notification* stop) {
  ASSIGN_OR_RETURN(v1::GetAssignmentReply reply, AwaitAssignment(stop));
  const v1::ShardAssignment& a = reply.assignment();
  group_id_ = a.group_id();
  LOG(INFO) << "assigned to group " << a.group_id() << " rank " << a.group_rank() << " (tp "
            << a.tp_rank() << ", pp " << a.pp_rank() << ") of plan epoch " << reply.plan_epoch();
  absl::StatusOr<int64_t> resident_bytes = LoadShard(path, a, &weights_);
  absl::Status outcome = resident_bytes.status();
  if (outcome.ok()) {
    {
      absl::MutexLock lock(&mu_);
      resident_bytes_ = *resident_bytes;
    }
    outcome = JoinGroup(reply);
  }
  RETURN_IF_ERROR(ReportReady(reply.plan_epoch(), outcome));
  RETURN_IF_ERROR(outcome);
  LOG(INFO) << "ready: " << *resident_bytes << " bytes of weights in this shard";
  return engine_->is_leader() ? ServeLeader(stop) : ServeFollower(stop);
}

absl::Status WorkerProcess::ServeLeader(absl::Notification* stop) {
  // Idle followers wait in a broadcast bounded by group_timeout: ping well within it.
  ServingOptions serving_options = options_.serving;
  serving_options.ping_interval =
      std::max(absl::Milliseconds(50), std::min(options_.group_timeout / 4, absl::Seconds(1)));
  if (options_.metrics_registry != nullptr) {
    const char* pool = options_.role == v1::POOL_ROLE_PREFILL  ? "prefill"
                       : options_.role == v1::POOL_ROLE_DECODE ? "decode"
                                                               : "both";
    metrics_ = std::make_unique<EngineMetrics>(*options_.metrics_registry, pool, group_id_);
    serving_options.metrics = metrics_.get();
  }
  serving_options.prefill_client = prefill_client_.get();
  serving_options.kv_peers = kv_peers_;
  ASSIGN_OR_RETURN(serving_, ServingEngine::Create(engine_.get(), serving_options));
  service_.SetEngine(serving_.get());
  absl::Status failure;
  while (!stop->WaitForNotificationWithTimeout(absl::Milliseconds(100))) {
    if (failure = Dead(); !failure.ok()) break;
    if (absl::Status s = serving_->health(); !s.ok()) {
      failure = absl::Status(s.code(), absl::StrCat("the engine group failed: ", s.message()));
      break;
    }
  }
  // Ends in-flight requests first (they end at the engine's next step), so that Stop does not
  // wait for a long generation.
  service_.SetEngine(nullptr, failure.ok() ? "this worker is shutting down" : failure.ToString());
  serving_->Shutdown();
  ShutdownServer();
  if (!failure.ok()) return failure;
  // Followers leave ServeFollower; a failure here only means one of them is gone already.
  if (absl::Status s = engine_->Stop(); !s.ok()) LOG(WARNING) << "stopping the group: " << s;
  return absl::OkStatus();
}

absl::Status WorkerProcess::ServeFollower(absl::Notification* stop) {
  absl::Status status =
      engine_->ServeFollower([&] { return stop->HasBeenNotified() || !Dead().ok(); });
  if (stop->HasBeenNotified()) return absl::OkStatus();
  RETURN_IF_ERROR(Dead());
  if (!status.ok()) {
    return absl::Status(status.code(), absl::StrCat("the engine group failed: ", status.message()));
  }
  LOG(INFO) << "the leader shut the group down";
  return absl::OkStatus();
}

}  // namespace shardserve
