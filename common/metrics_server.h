// Serves a Prometheus registry as text on GET /metrics, on its own thread.
//
//   auto registry = std::make_shared<prometheus::Registry>();
//   ASSIGN_OR_RETURN(std::unique_ptr<MetricsServer> server,
//                    MetricsServer::Start("0.0.0.0", 9400, registry));
//   ... server->port() ...
//
// Why not prometheus-cpp's Exposer: its HTTP server (civetweb) names its threads with
// vsnprintf on small thread stacks, and in a process that also loads libquadmath (through
// OpenBLAS's Fortran runtime, as the workers do) glibc's printf then takes its positional path,
// which overflows those stacks. This server's threads have default stacks.
//
// Thread safety: the registry is collected on the server's threads (prometheus-cpp's collection
// is thread-safe). The destructor stops the server and joins its thread.
#ifndef SHARDSERVE_COMMON_METRICS_SERVER_H_
#define SHARDSERVE_COMMON_METRICS_SERVER_H_

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "prometheus/registry.h"

namespace httplib {
class Server;
}

namespace shardserve {

class MetricsServer {
 public:
  // Listens on host:port (port 0: a free one). UNAVAILABLE when it cannot bind.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(
      const std::string& host, int port, std::shared_ptr<prometheus::Registry> registry);
  ~MetricsServer();

  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  int port() const { return port_; }

 private:
  MetricsServer() = default;

  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace shardserve

#endif  // SHARDSERVE_COMMON_METRICS_SERVER_H_
