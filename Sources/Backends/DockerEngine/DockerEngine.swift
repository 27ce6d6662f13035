import Foundation
import NIOHTTP1

/// A Docker Engine reached over its Unix socket, through the Engine API (v1.41, Docker 20.10 and
/// later): no docker CLI, no registry. Images come in as root file system tars (`importImage`) and
/// are never pulled.
///
/// Every call opens its own connection and has a deadline; an engine that is not there or does not
/// answer is a ``DockerError`` with ``DockerError/isUnavailable``.
public struct DockerEngine: Sendable {
    /// Where it answers: `unix:///run/docker.sock`, or `tcp://host:port` of a compute agent.
    public var socketPath: String { self.connection.address.url }
    /// How long an ordinary call may take (image imports get more).
    public var timeout: Duration = .seconds(30)
    let connection: EngineConnection

    /// - Parameters:
    ///   - socket: `unix:///run/docker.sock` or a plain path; or `tcp://host:port`, a compute agent
    ///     (`cloud agent`) in front of an engine on another machine.
    ///   - token: The agent's bearer token (a `tcp://` engine's).
    public init(socket: String, token: String? = nil) {
        self.connection = EngineConnection(address: Self.address(socket), token: token, apiVersion: "1.41")
    }

    /// A socket string as an address (a `tcp://` one without a valid port is port 0: it fails to connect).
    static func address(_ socket: String) -> EngineAddress {
        if socket.hasPrefix("tcp://") {
            let rest = socket.dropFirst("tcp://".count)
            guard let colon = rest.lastIndex(of: ":") else { return .tcp(host: String(rest), port: 0) }
            var host = String(rest[..<colon])
            if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            return .tcp(host: host, port: Int(rest[rest.index(after: colon)...]) ?? 0)
        }
        return .unix(path: socket.hasPrefix("unix://") ? String(socket.dropFirst("unix://".count)) : socket)
    }

    /// What the engine says about its host.
    public struct Info: Sendable, Equatable {
        public var cpus: Int
        public var memoryBytes: Int64
        public var serverVersion: String
        public var containersRunning: Int
    }

    /// `GET /info`: the host's CPUs and memory as the engine sees them.
    public func info() async throws -> Info {
        let answer = try await self.call(.GET, "/info", doing: "reading the engine's info")
        let object = try DockerJSON.object(answer.body, doing: "reading the engine's info")
        return Info(
            cpus: object["NCPU"] as? Int ?? 0, memoryBytes: (object["MemTotal"] as? NSNumber)?.int64Value ?? 0,
            serverVersion: object["ServerVersion"] as? String ?? "", containersRunning: object["ContainersRunning"] as? Int ?? 0)
    }

    // MARK: - Images

    /// Whether the engine has the image (`repository:tag`).
    public func hasImage(_ reference: String) async throws -> Bool {
        let answer = try await self.connection.exchange(.GET, "/images/\(reference)/json", timeout: self.timeout)
        switch answer.status {
        case 200: return true
        case 404: return false
        default: throw DockerError.answer(answer.status, answer.text, doing: "inspecting image \(reference)")
        }
    }

    /// `POST /images/create?fromSrc=-`: makes an image of a root file system tar.
    /// - Parameters:
    ///   - tar: The tar's bytes (the root of the file system at its top).
    ///   - repository: The image's repository (`cloud/tenant/name`).
    ///   - tag: Its tag.
    public func importImage(tar: [UInt8], repository: String, tag: String) async throws {
        let answer = try await self.connection.exchange(
            .POST, "/images/create", query: [("fromSrc", "-"), ("repo", repository), ("tag", tag)], body: tar,
            contentType: "application/x-tar", timeout: .seconds(600))
        let what = "importing image \(repository):\(tag)"
        guard answer.status == 200 else { throw DockerError.answer(answer.status, answer.text, doing: what) }
        // The engine streams JSON objects; a failure arrives as one with "error", still under 200.
        for line in answer.text.split(separator: "\n") {
            if let message = DockerJSON.message(String(line)), line.contains("\"error\"") { throw DockerError.streamed(message, doing: what) }
        }
    }

    /// Removes an image; missing is fine.
    public func removeImage(_ reference: String) async throws {
        let answer = try await self.connection.exchange(.DELETE, "/images/\(reference)", query: [("force", "1")], timeout: self.timeout)
        guard answer.status == 200 || answer.status == 404 else {
            throw DockerError.answer(answer.status, answer.text, doing: "removing image \(reference)")
        }
    }

    // MARK: - Containers

    /// `POST /containers/create`.
    /// - Returns: The container's id.
    /// - Throws: ``DockerError`` with ``DockerError/isConflict`` when the name is taken,
    ///   ``DockerError/isNotFound`` when the image is missing.
    public func createContainer(_ spec: ContainerSpec) async throws -> String {
        let body = try JSONSerialization.data(withJSONObject: spec.engineJSON, options: [.sortedKeys])
        let answer = try await self.call(
            .POST, "/containers/create", query: [("name", spec.name)], body: Array(body), expect: [201],
            doing: "creating container \(spec.name)")
        let object = try DockerJSON.object(answer.body, doing: "creating container \(spec.name)")
        guard let id = object["Id"] as? String, !id.isEmpty else { throw DockerError.malformed("no Id in the answer to creating \(spec.name)") }
        return id
    }

    /// Starts a container; one already running is fine.
    public func start(_ container: String) async throws {
        try await self.call(.POST, "/containers/\(container)/start", expect: [204, 304], doing: "starting container \(container)")
    }

    /// Stops a container (SIGTERM, then SIGKILL after `grace`); one already stopped is fine.
    public func stop(_ container: String, grace: Int = 10) async throws {
        try await self.call(
            .POST, "/containers/\(container)/stop", query: [("t", "\(grace)")], expect: [204, 304], timeout: self.timeout + .seconds(grace),
            doing: "stopping container \(container)")
    }

    /// Restarts a container.
    public func restart(_ container: String, grace: Int = 10) async throws {
        try await self.call(
            .POST, "/containers/\(container)/restart", query: [("t", "\(grace)")], expect: [204], timeout: self.timeout + .seconds(grace),
            doing: "restarting container \(container)")
    }

    /// Sends a signal to a running container.
    public func kill(_ container: String, signal: String = "KILL") async throws {
        try await self.call(.POST, "/containers/\(container)/kill", query: [("signal", signal)], expect: [204], doing: "killing container \(container)")
    }

    /// Removes a container, running or not, with its anonymous volumes; missing is fine.
    public func remove(_ container: String) async throws {
        try await self.call(
            .DELETE, "/containers/\(container)", query: [("force", "1"), ("v", "1")], expect: [204, 404], doing: "removing container \(container)")
    }

    /// A container's state, or nil when there is no such container.
    public func inspect(_ container: String) async throws -> ContainerState? {
        let answer = try await self.connection.exchange(.GET, "/containers/\(container)/json", timeout: self.timeout)
        if answer.status == 404 { return nil }
        guard answer.status == 200 else { throw DockerError.answer(answer.status, answer.text, doing: "inspecting container \(container)") }
        return ContainerState(try DockerJSON.object(answer.body, doing: "inspecting container \(container)"))
    }

    /// The containers carrying a label (`key` or `key=value`), running or not.
    public func containers(label: String) async throws -> [ContainerSummary] {
        let filters = try JSONSerialization.data(withJSONObject: ["label": [label]])
        let answer = try await self.call(
            .GET, "/containers/json", query: [("all", "1"), ("filters", String(decoding: filters, as: UTF8.self))], doing: "listing containers")
        guard let list = try JSONSerialization.jsonObject(with: Data(answer.body)) as? [[String: Any]] else {
            throw DockerError.malformed("the container list is not a JSON array")
        }
        return list.map(ContainerSummary.init)
    }

    /// A container's output.
    /// - Parameters:
    ///   - tail: At most this many of the last lines (nil: all).
    ///   - since: Only lines from this time on (the engine includes the instant itself).
    public func logs(_ container: String, tail: Int? = nil, since: LogFrames.Instant? = nil) async throws -> [LogFrames.Line] {
        var query = [("stdout", "1"), ("stderr", "1"), ("timestamps", "1"), ("tail", tail.map(String.init) ?? "all")]
        if let since { query.append(("since", since.engineText)) }
        let answer = try await self.call(.GET, "/containers/\(container)/logs", query: query, doing: "reading the logs of \(container)")
        return LogFrames.lines(answer.body, timestamps: true)
    }

    /// A sample of a container's CPU and memory use with the one before it (`/stats?stream=false`:
    /// the engine samples twice, about a second apart, so this takes that long).
    public func stats(_ container: String) async throws -> ContainerStats {
        let answer = try await self.call(
            .GET, "/containers/\(container)/stats", query: [("stream", "false")], timeout: self.timeout + .seconds(5),
            doing: "reading stats of \(container)")
        return ContainerStats(try DockerJSON.object(answer.body, doing: "reading stats of \(container)"))
    }

    /// What a command run in a container printed and how it ended.
    public struct ExecResult: Sendable {
        public var exitCode: Int
        /// Its stdout and stderr lines in order (``LogFrames/Line/timestamp`` is nil).
        public var lines: [LogFrames.Line]
        /// The output passed `limit` and was cut there.
        public var truncated: Bool
    }

    /// Runs a command in a running container and waits for it (`POST /containers/{id}/exec`, then
    /// `/exec/{id}/start`, whose answer is the output until the command ends, then `/exec/{id}/json`
    /// for its exit code).
    /// - Parameters:
    ///   - timeout: How long the command may run; past it this throws (the command goes on).
    ///   - limit: The most output bytes kept.
    public func exec(_ container: String, command: [String], timeout: Duration, limit: Int = 1 << 20) async throws -> ExecResult {
        let request = try JSONSerialization.data(withJSONObject: ["Cmd": command, "AttachStdout": true, "AttachStderr": true, "Tty": false])
        let made = try await self.call(
            .POST, "/containers/\(container)/exec", body: Array(request), expect: [201], doing: "starting a command in \(container)")
        guard let id = try DockerJSON.object(made.body, doing: "starting a command in \(container)")["Id"] as? String else {
            throw DockerError.malformed("no Id in the answer to an exec in \(container)")
        }
        let start = try JSONSerialization.data(withJSONObject: ["Detach": false, "Tty": false])
        let output = try await self.connection.exchange(
            .POST, "/exec/\(id)/start", body: Array(start), timeout: timeout, limit: limit)
        guard output.status == 200 else { throw DockerError.answer(output.status, output.text, doing: "running a command in \(container)") }
        let state = try await self.call(.GET, "/exec/\(id)/json", doing: "reading how a command in \(container) ended")
        let object = try DockerJSON.object(state.body, doing: "reading how a command in \(container) ended")
        return ExecResult(exitCode: object["ExitCode"] as? Int ?? -1, lines: LogFrames.lines(output.body, timestamps: false), truncated: output.truncated)
    }

    // MARK: -

    @discardableResult
    private func call(
        _ method: HTTPMethod, _ path: String, query: [(String, String)] = [], body: [UInt8]? = nil, expect: Set<Int> = [200],
        timeout: Duration? = nil, doing what: String
    ) async throws -> EngineConnection.Answer {
        let answer = try await self.connection.exchange(method, path, query: query, body: body, timeout: timeout ?? self.timeout)
        guard expect.contains(answer.status) else { throw DockerError.answer(answer.status, answer.text, doing: what) }
        return answer
    }
}

/// What a container runs and with which limits.
public struct ContainerSpec: Sendable, Equatable {
    /// The container's name on the engine (unique there).
    public var name: String
    /// `repository:tag` of an image the engine has.
    public var image: String
    /// The command and its arguments; empty: the image's own.
    public var command: [String] = []
    public var environment: [String: String] = [:]
    public var labels: [String: String] = [:]
    /// CPU limit in billionths of a CPU (0: none).
    public var nanoCPUs: Int64 = 0
    /// Memory limit in bytes (0: none).
    public var memoryBytes: Int64 = 0
    /// `no`, `on-failure`, `always` or `unless-stopped`.
    public var restartPolicy: String = "no"
    /// `none` (no network) until VPC networking attaches one.
    public var networkMode: String = "none"
    /// Host directories bound into the container.
    public var binds: [Bind] = []

    /// A host directory seen at a path in the container.
    public struct Bind: Sendable, Equatable {
        public var source: String
        public var target: String
        /// `rslave`: mounts made below `source` on the host later appear in the running container.
        public var propagation: String

        public init(source: String, target: String, propagation: String = "rprivate") {
            self.source = source
            self.target = target
            self.propagation = propagation
        }
    }

    public init(name: String, image: String) {
        self.name = name
        self.image = image
    }

    var engineJSON: [String: Any] {
        var object: [String: Any] = [
            "Image": self.image,
            "Labels": self.labels,
            "Env": self.environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" },
            "HostConfig": [
                "NanoCpus": self.nanoCPUs, "Memory": self.memoryBytes, "NetworkMode": self.networkMode,
                "RestartPolicy": ["Name": self.restartPolicy],
                "Mounts": self.binds.map { bind -> [String: Any] in
                    ["Type": "bind", "Source": bind.source, "Target": bind.target, "BindOptions": ["Propagation": bind.propagation]]
                },
            ] as [String: Any],
        ]
        if !self.command.isEmpty { object["Cmd"] = self.command }
        return object
    }
}

/// A container's state as `GET /containers/{id}/json` reports it.
public struct ContainerState: Sendable, Equatable {
    public var id: String
    /// `created`, `running`, `paused`, `restarting`, `removing`, `exited` or `dead`.
    public var status: String
    public var running: Bool
    public var exitCode: Int
    /// Why the engine could not run it, if it says.
    public var error: String
    public var oomKilled: Bool
    public var startedAt: String
    public var finishedAt: String
    public var labels: [String: String]
    /// Times the engine restarted it under its restart policy.
    public var restartCount: Int
    /// The paths in the container where something is mounted (binds and volumes).
    public var mountTargets: [String]

    init(_ object: [String: Any]) {
        let state = object["State"] as? [String: Any] ?? [:]
        let config = object["Config"] as? [String: Any] ?? [:]
        self.id = object["Id"] as? String ?? ""
        self.status = state["Status"] as? String ?? ""
        self.running = state["Running"] as? Bool ?? false
        self.exitCode = state["ExitCode"] as? Int ?? 0
        self.error = state["Error"] as? String ?? ""
        self.oomKilled = state["OOMKilled"] as? Bool ?? false
        self.startedAt = state["StartedAt"] as? String ?? ""
        self.finishedAt = state["FinishedAt"] as? String ?? ""
        self.labels = config["Labels"] as? [String: String] ?? [:]
        self.restartCount = object["RestartCount"] as? Int ?? 0
        self.mountTargets = (object["Mounts"] as? [[String: Any]] ?? []).compactMap { $0["Destination"] as? String }
    }
}

/// One entry of the container list.
public struct ContainerSummary: Sendable, Equatable {
    public var id: String
    public var names: [String]
    /// `running`, `exited`, …
    public var state: String
    public var labels: [String: String]

    init(_ object: [String: Any]) {
        self.id = object["Id"] as? String ?? ""
        self.names = (object["Names"] as? [String] ?? []).map { $0.hasPrefix("/") ? String($0.dropFirst()) : $0 }
        self.state = object["State"] as? String ?? ""
        self.labels = object["Labels"] as? [String: String] ?? [:]
    }
}

/// One stats sample: cumulative CPU time of the container and of the host, and memory in use.
public struct ContainerStats: Sendable, Equatable {
    /// Nanoseconds of CPU the container used, in total.
    public var cpuNanoseconds: Int64
    /// Nanoseconds of CPU the whole host used, in total (the denominator of a CPU share).
    public var systemNanoseconds: Int64
    public var onlineCPUs: Int
    public var memoryBytes: Int64
    /// The same two totals at the engine's previous sample (0 when it had none).
    public var previousCPUNanoseconds: Int64
    public var previousSystemNanoseconds: Int64

    init(_ object: [String: Any]) {
        let cpu = object["cpu_stats"] as? [String: Any] ?? [:]
        let previous = object["precpu_stats"] as? [String: Any] ?? [:]
        let memory = object["memory_stats"] as? [String: Any] ?? [:]
        func total(_ stats: [String: Any]) -> Int64 { ((stats["cpu_usage"] as? [String: Any])?["total_usage"] as? NSNumber)?.int64Value ?? 0 }
        self.cpuNanoseconds = total(cpu)
        self.systemNanoseconds = (cpu["system_cpu_usage"] as? NSNumber)?.int64Value ?? 0
        self.onlineCPUs = cpu["online_cpus"] as? Int ?? 0
        self.memoryBytes = (memory["usage"] as? NSNumber)?.int64Value ?? 0
        self.previousCPUNanoseconds = total(previous)
        self.previousSystemNanoseconds = (previous["system_cpu_usage"] as? NSNumber)?.int64Value ?? 0
    }

    /// How many CPUs the container kept busy between the two samples (docker stats' CPU % / 100),
    /// or nil without a previous sample.
    public var cpusUsed: Double? {
        let system = self.systemNanoseconds - self.previousSystemNanoseconds
        guard self.previousSystemNanoseconds > 0, system > 0, self.onlineCPUs > 0 else { return nil }
        return Double(max(0, self.cpuNanoseconds - self.previousCPUNanoseconds)) / Double(system) * Double(self.onlineCPUs)
    }
}

/// Reading the engine's JSON.
enum DockerJSON {
    static func object(_ bytes: [UInt8], doing what: String) throws -> [String: Any] {
        guard let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] else {
            throw DockerError.malformed("the answer to \(what) is not a JSON object")
        }
        return object
    }

    /// The `message` (or `error`) of an engine error body.
    static func message(_ body: String) -> String? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any] else { return nil }
        return object["message"] as? String ?? object["error"] as? String
    }
}
