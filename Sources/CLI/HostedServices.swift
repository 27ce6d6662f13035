import ArgumentParser
import Compute
import ControlPlane
import Cron
import HostAddress
import Notify
import Prometheus
import Queues
import Secrets
import ServiceContract
import Storage
import StorageClient
import Libvirt
import VolumeFiles

/// The cloud services the control plane hosts: the one list `cloud dev`, `cloud server` and
/// `cloud openapi` use. A new service is one line here (and its module).
enum HostedServices {
    /// The services, with their run-time settings.
    /// - Parameters:
    ///   - storage: The storage cluster behind `/storage` (nil: those routes answer 503). Its keys
    ///     also sign requests to the queues' SQS endpoint (nil: `/sqs` answers 503).
    ///   - masterKey: The deployment's master key for `/secrets` (nil: those routes answer 503).
    ///   Compute keeps image tars in the same storage cluster (nil: image imports answer 503).
    ///   Snapshots of volumes go there too.
    ///   - volumes: The directory of compute volume files (nil: volume routes answer 503).
    ///   - machines: The directory of virtual machines' files (nil: instances on libvirt hosts fail).
    ///   - console: Where the console gateway listens (nil: none; consoles give their VNC address only).
    ///   - metrics: The process's registry, the control plane's too (`configuration.api.metricsRegistry`).
    static func make(
        storage: StorageServiceConfiguration?, masterKey: MasterKey?, volumes: String? = nil, machines: String? = nil,
        console: ConsoleGatewayConfiguration? = nil, metrics: PrometheusCollectorRegistry = PrometheusCollectorRegistry()
    ) -> [any CloudService] {
        let cluster = storage.map(StorageAdminClient.init)
        let sqs = cluster.map { cluster in
            SQSCredentials(region: cluster.region) { accessKeyID, date, region in
                try await cluster.signingKey(accessKeyID: accessKeyID, date: date, region: region, service: "sqs")
            }
        }
        let images = storage.map { storage in
            SystemStore(endpoint: S3Endpoint(url: storage.endpoint, accessKey: storage.accessKey, secretKey: storage.secretKey, region: storage.region))
        }
        return [
            StorageService(cluster: cluster), SecretsService(masterKey: masterKey), QueuesService(sqs: sqs), NotifyService(), CronService(),
            ComputeService(
                store: images, volumes: volumes.map(VolumeFiles.init(root:)), machines: machines.map(MachineFiles.init(root:)),
                console: console, metrics: ServiceMetrics(service: "compute", registry: metrics)),
        ]
    }

    /// The services without run-time settings: what they declare (routes, permissions, quotas), for
    /// the API reference and option checks.
    static var described: [any CloudService] { Self.make(storage: nil, masterKey: nil) }

    /// `--console-address host:port` as a gateway's configuration (port 0: any free port).
    static func console(_ address: String?) throws -> ConsoleGatewayConfiguration? {
        guard let address else { return nil }
        guard let (host, port) = HostPort.split(address), (0...65535).contains(port) else {
            throw ValidationError("--console-address must be host:port, not '\(address)'")
        }
        return ConsoleGatewayConfiguration(host: host, port: port)
    }

    /// Every quota resource of the host and the services, in display order.
    static var quotaResources: [QuotaResource] {
        (try? ServiceCatalog(services: Self.described))?.quotaResources ?? ServiceCatalog.hostOnly.quotaResources
    }
}
