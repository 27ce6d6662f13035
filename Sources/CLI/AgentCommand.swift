import ArgumentParser
import ComputeAgent
import HostAddress
import Logging
import ServiceContract
import ServiceLifecycle
import UnixSignals

/// `cloud agent`: puts this machine's Docker Engine behind a token on a TCP port and registers it
/// as a compute host with a control plane on another machine.
struct Agent: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a compute agent: this machine's Docker Engine, behind a token, as a host of a control plane elsewhere.",
        discussion: """
            It listens on --listen, registers itself as host NAME (with a platform operator's API key), and carries each \\
            request of the control plane that presents its token to the engine. Its token is new at every start; it \\
            registers again on start, and the host is `unknown` while it is not running.
            cloud agent h3 --docker-socket unix:///run/docker.sock --listen 10.0.0.5:2377 --api-url http://10.0.0.1:8080
            """)

    @Argument(help: "The host's name (1 to 63 of lowercase letters, digits and -).") var name: String
    @Option(help: "The engine's socket on this machine.") var dockerSocket: String = "unix:///run/docker.sock"
    @Option(help: "Where the agent listens, host:port (port 0: a free one). The control plane must reach it there.")
    var listen: String = "127.0.0.1:2377"
    @Option(help: "The address the control plane reaches the agent at, when it is not --listen's (a wildcard listen needs one).")
    var advertise: String?
    @Option(help: "Instance vCPUs per CPU (1 to 64, default 8).") var cpuOvercommit: Int?
    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.") var logLevel: String = "info"
    @OptionGroup var client: APIClientOptions

    func validate() throws {
        guard HostPort.split(self.listen) != nil else { throw ValidationError("--listen must be host:port, not '\(self.listen)'") }
        guard self.dockerSocket.hasPrefix("unix:///") else { throw ValidationError("--docker-socket must be unix:///path/to/docker.sock") }
        if let host = HostPort.split(self.listen)?.host, ["0.0.0.0", "::"].contains(host), self.advertise == nil {
            throw ValidationError("--listen \(self.listen) is every address: say which one the control plane reaches with --advertise")
        }
    }

    func run() async throws {
        let logger = try makeLogger(level: self.logLevel)
        guard let (host, port) = HostPort.split(self.listen) else { throw ValidationError("--listen must be host:port") }
        let token = SecureRandom.identifier(prefix: "", bytes: 32)
        let proxy = try await EngineProxy(host: host, port: port, socket: self.dockerSocket, token: token, logger: logger)
        let address = HostPort.join(host: self.advertise ?? host, port: proxy.port)
        var body: [(String, JSONValue)] = [
            ("name", .string(self.name)), ("docker_socket", .string("tcp://" + address)), ("agent_token", .string(token)),
        ]
        if let cpuOvercommit { body.append(("cpu_overcommit", .int(Int64(cpuOvercommit)))) }
        // The control plane checks the engine through this agent before it answers, so it must be listening already.
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [.init(service: proxy)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            do {
                _ = try await self.client.call("POST", "/compute/hosts", body: .object(body))
            } catch {
                await group.triggerGracefulShutdown()
                throw error
            }
            logger.notice("compute agent registered", metadata: ["host": "\(self.name)", "address": "\(address)", "engine": "\(self.dockerSocket)"])
            try await tasks.waitForAll()
        }
    }
}
