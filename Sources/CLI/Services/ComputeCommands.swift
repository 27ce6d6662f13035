import ArgumentParser
import Foundation
import ServiceContract
import VolumeFiles

/// `cloud images`: the root file systems instances start from (docs/services/compute.md).
struct Images: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Images: root file systems (tars) that instances of the tenant of your API key start from.",
        discussion: "An image is imported from a tar of a root file system, or from a directory; nothing is pulled from a registry.",
        subcommands: [Import.self, List.self, Show.self, Delete.self],
        defaultSubcommand: List.self)

    static let columns = [("NAME", "name"), ("SIZE", "size_bytes"), ("COMMAND", "command"), ("DIGEST", "digest"), ("CREATED", "created_at")]

    static func path(_ name: String) -> String { "/compute/images/" + name.addingPercentEncodingForQuery() }

    struct Import: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Import an image from a tar of a root file system (or from a directory with --from-dir, or a Debian made with --debootstrap).",
            discussion: """
                cloud images import busybox ./busybox-rootfs.tar
                cloud images import tools --from-dir ./rootfs --cmd "sh -l"
                cloud images import bookworm --debootstrap bookworm --cmd bash     (as root, with debootstrap and a Debian mirror)
                """)
        @Argument(help: "The image's name (lowercase letters, digits and -).") var name: String
        @Argument(help: "The tar file, or '-' for standard input.") var tar: String?
        @Option(help: "Make the tar from this directory (with the system's tar).") var fromDir: String?
        @Option(help: "Make the root file system with debootstrap --variant=minbase of this Debian suite (bookworm, trixie, …).")
        var debootstrap: String?
        @Option(help: "The Debian mirror debootstrap fetches from.") var mirror: String = "http://deb.debian.org/debian"
        @Option(help: "More packages for debootstrap to install, comma-separated.") var include: String?
        @Option(help: "What an instance runs when it names nothing, as words split at spaces (default sh).") var cmd: String?
        @OptionGroup var client: APIClientOptions

        func validate() throws {
            guard [self.tar != nil, self.fromDir != nil, self.debootstrap != nil].filter({ $0 }).count == 1 else {
                throw ValidationError("give exactly one of a tar file, --from-dir or --debootstrap")
            }
            if let suite = self.debootstrap, suite.isEmpty || !suite.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }) {
                throw ValidationError("--debootstrap takes a suite name such as bookworm")
            }
            if self.include != nil && self.debootstrap == nil { throw ValidationError("--include goes with --debootstrap") }
        }

        func run() async throws {
            let data: Data
            if let suite = self.debootstrap {
                data = try Self.debootstrapped(suite: suite, mirror: self.mirror, include: self.include)
            } else if let directory = self.fromDir {
                data = try Self.tarOf(directory: directory)
            } else if self.tar == "-" {
                data = FileHandle.standardInput.readDataToEndOfFile()
            } else {
                let path = self.tar!
                guard let read = FileManager.default.contents(atPath: path) else { throw CLIError("cannot read \(path)") }
                data = read
            }
            var path = Images.path(self.name)
            if let cmd {
                let words = JSONValue.array(Instances.words(cmd).map(JSONValue.string)).serialized()
                path += "?command=" + words.addingPercentEncodingForQuery()
            }
            let answer = try await self.client.call("PUT", path, upload: .init(data: data, contentType: "application/x-tar"))
            self.client.emit(answer) {
                print("Image \(self.name) imported (\(APIClientOptions.text(answer?["size_bytes"])) bytes, \(APIClientOptions.text(answer?["digest"]))).")
            }
        }

        /// A minimal Debian of `suite` made by `debootstrap --variant=minbase` in a directory of its own
        /// (its progress on standard error), as a tar; the directory goes afterwards.
        static func debootstrapped(suite: String, mirror: String, include: String?) throws -> Data {
            guard getuid() == 0 else { throw CLIError("--debootstrap needs root (debootstrap makes device nodes and chroots)") }
            guard let tool = ["/usr/sbin/debootstrap", "/usr/bin/debootstrap"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
                throw CLIError("debootstrap is not installed on this machine (Debian: apt-get install debootstrap)")
            }
            let root = FileManager.default.temporaryDirectory.appendingPathComponent("cloud-debootstrap-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: false)
            defer { Self.removeTree(root) }
            let process = Process()
            process.executableURL = URL(fileURLWithPath: tool)
            process.arguments = ["--variant=minbase"] + (include.map { ["--include=" + $0] } ?? []) + [suite, root, mirror]
            process.standardOutput = FileHandle.standardError
            process.standardError = FileHandle.standardError
            do { try process.run() } catch { throw CLIError("cannot run debootstrap: \(error)") }
            process.waitUntilExit()
            guard process.terminationStatus == 0 else {
                throw CLIError("debootstrap of \(suite) from \(mirror) failed (exit \(process.terminationStatus)); its output is above")
            }
            // What debootstrap downloaded is not part of the image.
            Self.removeTree(root + "/var/cache/apt/archives", keepingTheDirectory: true)
            return try Self.tarOf(directory: root)
        }

        /// Removes a tree, after lazily unmounting what a failed debootstrap may have left mounted in it
        /// (never following a mount out of it). `keepingTheDirectory` empties it instead.
        static func removeTree(_ path: String, keepingTheDirectory: Bool = false) {
            let mounts = VolumeFiles.mountPoints().filter { $0 == path || $0.hasPrefix(path + "/") }.sorted { $0.count > $1.count }
            for mount in mounts {
                let umount = Process()
                umount.executableURL = URL(fileURLWithPath: "/usr/bin/env")
                umount.arguments = ["umount", "-l", mount]
                if (try? umount.run()) != nil { umount.waitUntilExit() }
            }
            if keepingTheDirectory {
                for entry in (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [] {
                    try? FileManager.default.removeItem(atPath: path + "/" + entry)
                }
            } else {
                try? FileManager.default.removeItem(atPath: path)
            }
        }

        /// The directory's contents as a tar, numeric owners, made by the system's `tar`.
        static func tarOf(directory: String) throws -> Data {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw CLIError("\(directory) is not a directory")
            }
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["tar", "--numeric-owner", "-C", directory, "-cf", "-", "."]
            let output = Pipe()
            let errors = Pipe()
            process.standardOutput = output
            process.standardError = errors
            do { try process.run() } catch { throw CLIError("cannot run tar to pack \(directory): \(error)") }
            let data = output.fileHandleForReading.readDataToEndOfFile()
            let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            guard process.terminationStatus == 0 else {
                throw CLIError("tar could not pack \(directory): \(message.trimmingCharacters(in: .whitespacesAndNewlines))")
            }
            return data
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The tenant's images.")
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            let resources = ResourceClient(self.client)
            resources.show(try await resources.listAll("/compute/images", itemsKey: "images"), itemsKey: "images", columns: Images.columns)
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One image.")
        @Argument(help: "The name.") var name: String
        @OptionGroup var client: APIClientOptions

        func run() async throws { ResourceClient(self.client).showOne(try await self.client.call("GET", Images.path(self.name))) }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete an image no instance uses.")
        @Argument(help: "The name.") var name: String
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            try await self.client.call("DELETE", Images.path(self.name))
            self.client.emit(.object([("deleted", .string(self.name))])) { print("Image \(self.name) deleted.") }
        }
    }
}

/// `cloud ssh-keys`: public keys that machines get through cloud-init.
struct SSHKeys: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ssh-keys", abstract: "SSH public keys of the tenant of your API key, installed in machines made with --ssh-key.",
        subcommands: [Import.self, List.self, Show.self, Delete.self], defaultSubcommand: List.self)

    static func path(_ name: String) -> String { "/compute/ssh-keys/" + name.addingPercentEncodingForQuery() }
    static let columns = [("NAME", "name"), ("TYPE", "type"), ("FINGERPRINT", "fingerprint"), ("CREATED", "created_at")]

    struct Import: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Import a public key.", discussion: "cloud ssh-keys import laptop --public-key-file ~/.ssh/id_ed25519.pub")
        @Argument(help: "The key's name (lowercase letters, digits and -).") var name: String
        @Option(help: "The public key file (one authorized_keys line).") var publicKeyFile: String
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            guard let data = FileManager.default.contents(atPath: self.publicKeyFile) else { throw CLIError("cannot read \(self.publicKeyFile)") }
            let answer = try await self.client.call(
                "PUT", SSHKeys.path(self.name), body: .object([("public_key", .string(String(decoding: data, as: UTF8.self)))]))
            self.client.emit(answer) { print("SSH key \(self.name) imported (\(APIClientOptions.text(answer?["fingerprint"]))).") }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The tenant's SSH keys.")
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            let resources = ResourceClient(self.client)
            resources.show(try await resources.listAll("/compute/ssh-keys", itemsKey: "ssh_keys"), itemsKey: "ssh_keys", columns: SSHKeys.columns)
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One SSH key.")
        @Argument(help: "The name.") var name: String
        @OptionGroup var client: APIClientOptions

        func run() async throws { ResourceClient(self.client).showOne(try await self.client.call("GET", SSHKeys.path(self.name))) }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete an SSH key (machines made with it keep it).")
        @Argument(help: "The name.") var name: String
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            try await self.client.call("DELETE", SSHKeys.path(self.name))
            self.client.emit(.object([("deleted", .string(self.name))])) { print("SSH key \(self.name) deleted.") }
        }
    }
}

/// `cloud instance-types`: the sizes an instance can have.
struct InstanceTypes: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "instance-types", abstract: "The sizes an instance can have (vCPUs and memory).", subcommands: [List.self],
        defaultSubcommand: List.self)

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every instance type.")
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            let resources = ResourceClient(self.client)
            let items = try await resources.listAll("/compute/instance-types", itemsKey: "instance_types")
            resources.show(items, itemsKey: "instance_types", columns: [("NAME", "name"), ("VCPUS", "vcpus"), ("MEMORY_MIB", "memory_mib")])
        }
    }
}

/// `cloud hosts`: the machines instances run on (platform operators).
struct Hosts: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compute hosts: the Docker Engines and libvirt daemons instances run on (platform operators only).",
        subcommands: [Add.self, List.self, Remove.self], defaultSubcommand: List.self)

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Register a host by its Docker Engine socket (containers) or its libvirt URI (virtual machines); it must answer.",
            discussion: "cloud hosts add h1 --docker-socket unix:///run/docker.sock\ncloud hosts add vm1 --libvirt qemu:///system")
        @Argument(help: "The host's name (lowercase letters, digits and -).") var name: String
        @Option(help: "The engine's socket, unix:///path/to/docker.sock.") var dockerSocket: String?
        @Option(help: "This machine's libvirt daemon, qemu:///system.") var libvirt: String?
        @Option(help: "With --libvirt: kvm (the default where libvirt offers it) or tcg (QEMU's emulation, where /dev/kvm does not work).")
        var accelerator: String?
        @Option(help: "Instance vCPUs per CPU of the host (1 to 64; default 8).") var cpuOvercommit: Int?
        @OptionGroup var client: APIClientOptions

        func validate() throws {
            if (self.dockerSocket == nil) == (self.libvirt == nil) { throw ValidationError("give one of --docker-socket and --libvirt") }
        }

        func run() async throws {
            var body: [(String, JSONValue)] = [("name", .string(self.name))]
            if let dockerSocket { body.append(("docker_socket", .string(dockerSocket))) }
            if let libvirt { body.append(("libvirt_uri", .string(libvirt))) }
            if let accelerator { body.append(("accelerator", .string(accelerator))) }
            if let cpuOvercommit { body.append(("cpu_overcommit", .int(Int64(cpuOvercommit)))) }
            let answer = try await self.client.call("POST", "/compute/hosts", body: .object(body))
            self.client.emit(answer) {
                let engine = self.libvirt == nil ? "Docker " : ""
                print("Host \(self.name) added: \(APIClientOptions.text(answer?["cpus"])) CPUs, \(engine)\(APIClientOptions.text(answer?["engine_version"])).")
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The hosts, their capacity and what is placed on them.")
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            let resources = ResourceClient(self.client)
            let columns = [
                ("NAME", "name"), ("STATUS", "status"), ("CPUS", "cpus"), ("MEMORY", "memory_bytes"), ("INSTANCES", "instances"),
                ("VCPUS_USED", "vcpus_allocated"), ("MIB_USED", "memory_mib_allocated"), ("BACKEND", "backend"), ("SOCKET", "docker_socket"),
                ("URI", "libvirt_uri"), ("REASON", "status_reason"),
            ]
            resources.show(try await resources.listAll("/compute/hosts", itemsKey: "hosts"), itemsKey: "hosts", columns: columns)
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Forget a host that runs no instances.")
        @Argument(help: "The name.") var name: String
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            try await self.client.call("DELETE", "/compute/hosts/" + self.name.addingPercentEncodingForQuery())
            self.client.emit(.object([("removed", .string(self.name))])) { print("Host \(self.name) removed.") }
        }
    }
}

/// `cloud instances`: containers and virtual machines of the tenant of your key.
struct Instances: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Instances: processes from an image, placed on a compute host, in the tenant of your API key.",
        discussion: "Creating, stopping, starting, rebooting and deleting are asynchronous; --wait waits for the outcome.",
        subcommands: [Create.self, List.self, Show.self, Logs.self, Exec.self, Console.self, Stop.self, Start.self, Reboot.self, Delete.self],
        defaultSubcommand: List.self)

    static let columns = [
        ("NAME", "name"), ("STATUS", "status"), ("TYPE", "type"), ("BACKEND", "backend"), ("IMAGE", "image"), ("HOST", "host"), ("CREATED", "created_at"),
        ("REASON", "status_reason"),
    ]

    static func path(_ name: String) -> String { "/compute/instances/" + name.addingPercentEncodingForQuery() }

    /// `--cmd` text as words split at spaces (no quoting: use `--` and separate arguments for that).
    static func words(_ text: String) -> [String] { text.split(whereSeparator: \.isWhitespace).map(String.init) }

    /// What an instance (or each replica) runs and its size: the options instances, deployments
    /// and auto-scaling groups share.
    struct ProcessOptions: ParsableArguments {
        @Option(help: "The instance type (`cloud instance-types list`; default small).") var type: String?
        @Option(help: "What it runs, as words split at spaces; or give the exact arguments after --.") var cmd: String?
        @Option(name: .customLong("env"), help: "An environment variable NAME=VALUE (repeatable).") var environment: [String] = []
        @Argument(parsing: .postTerminator, help: "The exact command and arguments, after --.") var command: [String] = []

        func validate() throws {
            if self.cmd != nil && !self.command.isEmpty { throw ValidationError("give the command with --cmd or after --, not both") }
        }

        /// The request body's `type`, `command` and `environment` members, where given.
        func members() throws -> [(String, JSONValue)] {
            var members: [(String, JSONValue)] = []
            if let type { members.append(("type", .string(type))) }
            let command = self.cmd.map(Instances.words) ?? self.command
            if !command.isEmpty { members.append(("command", .array(command.map(JSONValue.string)))) }
            if !self.environment.isEmpty {
                members.append(("environment", .object(try ResourceClient.attributes(self.environment, option: "--env"))))
            }
            return members
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create an instance; it is pending until a host runs it.",
            discussion: """
                cloud instances create web1 --image busybox --type small --wait
                cloud instances create job --image busybox -- sh -c 'echo hello; sleep 60'
                """)
        @Argument(help: "The name (lowercase letters, digits and -).") var name: String
        @Option(help: "The image.") var image: String
        @Option(help: "docker (a container, the default) or libvirt (a virtual machine booting the image's kernel).") var backend: String?
        @Option(help: "no (default), on-failure, always or unless-stopped.") var restart: String?
        @Option(help: "A machine's user data for its cloud-init (#cloud-config or a script), from this file.") var userDataFile: String?
        @Option(name: .customLong("ssh-key"), help: "An SSH key (`cloud ssh-keys list`) the machine's cloud-init installs (repeatable).")
        var sshKeys: [String] = []
        @Flag(help: "Wait until it is ready (or failed, with the reason).") var wait = false
        @OptionGroup var process: ProcessOptions
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            var body: [(String, JSONValue)] = [("name", .string(self.name)), ("image", .string(self.image))] + (try self.process.members())
            if let backend { body.append(("backend", .string(backend))) }
            if let restart { body.append(("restart", .string(restart))) }
            if let userDataFile {
                guard let data = FileManager.default.contents(atPath: userDataFile) else { throw CLIError("cannot read \(userDataFile)") }
                body.append(("user_data", .string(String(decoding: data, as: UTF8.self))))
            }
            if !self.sshKeys.isEmpty { body.append(("ssh_keys", .array(self.sshKeys.map(JSONValue.string)))) }
            let resources = ResourceClient(self.client)
            var answer = try await resources.create("/compute/instances", body: .object(body))
            if self.wait { answer = try await resources.wait(Instances.path(self.name)) }
            self.client.emit(answer) {
                let host = answer?["host"].map { " on \(APIClientOptions.text($0))" } ?? ""
                print("Instance \(self.name) \(APIClientOptions.text(answer?["status"]))\(host).")
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The tenant's instances.")
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            let resources = ResourceClient(self.client)
            resources.show(try await resources.listAll("/compute/instances", itemsKey: "instances"), itemsKey: "instances", columns: Instances.columns)
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One instance.")
        @Argument(help: "The name.") var name: String
        @OptionGroup var client: APIClientOptions

        func run() async throws { ResourceClient(self.client).showOne(try await self.client.call("GET", Instances.path(self.name))) }
    }

    struct Logs: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "What an instance wrote to stdout and stderr; --follow keeps printing new lines.",
            discussion: "stderr lines go to the command's stderr. --follow ends when the instance is deleted, or with Ctrl-C.")
        @Argument(help: "The name.") var name: String
        @Option(help: "At most this many of the last lines (1 to 10000).") var tail: Int = 1000
        @Option(help: "Only lines after this RFC 3339 time.") var since: String?
        @Flag(help: "Keep printing lines as they are written (polls every second).") var follow = false
        @Flag(help: "Print each line's time before it.") var timestamps = false
        @OptionGroup var client: APIClientOptions

        func validate() throws {
            guard (1...10_000).contains(self.tail) else { throw ValidationError("--tail must be 1 to 10000") }
        }

        func run() async throws {
            var since = self.since
            var tail = self.tail
            repeat {
                var query = ["tail=\(tail)"]
                if let since { query.append("since=" + since.addingPercentEncodingForQuery()) }
                let answer: JSONValue?
                do {
                    answer = try await self.client.call("GET", Instances.path(self.name) + "/logs?" + query.joined(separator: "&"))
                } catch let error as CLIError where self.follow && since != nil && error.status == 404 {
                    return  // deleted while followed
                }
                let lines: [JSONValue] = if case .array(let lines) = answer?["lines"] { lines } else { [] }
                if self.client.format != .table {
                    self.client.emit(answer) {}
                } else {
                    for line in lines { self.print(line) }
                }
                if case .string(let last) = lines.last?["time"], !last.isEmpty { since = last }
                if self.follow {
                    // --tail bounds the first answer only: later ones carry every line since the last.
                    tail = 10_000
                    if since == nil { since = Self.now() }
                    try await Task.sleep(for: .seconds(1))
                }
            } while self.follow
        }

        func print(_ line: JSONValue) {
            var text = APIClientOptions.text(line["text"])
            if self.timestamps { text = APIClientOptions.text(line["time"]) + " " + text }
            let handle = line["stream"] == .string("stderr") ? FileHandle.standardError : FileHandle.standardOutput
            handle.write(Data((text + "\n").utf8))
        }

        /// Now in RFC 3339: where following starts when the instance has written nothing yet.
        static func now() -> String {
            let formatter = ISO8601DateFormatter()
            formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            return formatter.string(from: Date())
        }
    }

    struct Exec: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run a command in a ready instance; its stdout and stderr are printed, and its exit status is this command's.",
            discussion: "cloud instances exec web1 -- sh -c 'df -h /volumes'")
        @Argument(help: "The name.") var name: String
        @Option(help: "Seconds it may run (1 to 600).") var timeout: Int = 60
        @Argument(parsing: .postTerminator, help: "The command and its arguments, after --.") var command: [String] = []
        @OptionGroup var client: APIClientOptions

        func validate() throws {
            if self.command.isEmpty { throw ValidationError("give the command after --, such as: -- sh -c 'echo hi'") }
        }

        func run() async throws {
            let answer = try await self.client.call(
                "POST", Instances.path(self.name) + "/exec",
                body: .object([("command", .array(self.command.map(JSONValue.string))), ("timeout_seconds", .int(Int64(self.timeout)))]))
            if self.client.format != .table {
                self.client.emit(answer) {}
            } else if case .array(let lines) = answer?["lines"] {
                for line in lines {
                    let text = (APIClientOptions.text(line["text"]) + "\n")
                    if case .string("stderr") = line["stream"] {
                        FileHandle.standardError.write(Data(text.utf8))
                    } else {
                        FileHandle.standardOutput.write(Data(text.utf8))
                    }
                }
            }
            if case .int(let code) = answer?["exit_code"], code != 0 { throw ExitCode(Int32(truncatingIfNeeded: code)) }
        }
    }

    struct Console: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Where a running virtual machine's VNC console listens, its password, and a one-time WebSocket link for browsers.",
            discussion: """
                cloud instances console vm1   (then: vncviewer 127.0.0.1::PORT, or any VNC client, with the password; \
                or open the WebSocket link in noVNC within a minute: it serves one connection)
                """)
        @Argument(help: "The name.") var name: String
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            let answer = try await self.client.call("GET", Instances.path(self.name) + "/console")
            self.client.emit(answer) {
                print("VNC \(APIClientOptions.text(answer?["host"])):\(APIClientOptions.text(answer?["port"]))  password \(APIClientOptions.text(answer?["password"]))")
                if case .string(let link)? = answer?["websocket_url"] { print("WebSocket \(link)  (one connection, within a minute)") }
            }
        }
    }

    /// `stop`, `start` and `reboot`: a request, then with --wait the state it ends in.
    struct PowerOptions: ParsableArguments {
        @Argument(help: "The name.") var name: String
        @Flag(help: "Wait until it has happened.") var wait = false
        @OptionGroup var client: APIClientOptions

        func request(_ action: String, until target: String, done: String) async throws {
            var answer = try await self.client.call("POST", Instances.path(self.name) + "/" + action)
            if self.wait { answer = try await ResourceClient(self.client).wait(Instances.path(self.name), until: [target]) }
            self.client.emit(answer) {
                print(self.wait ? "Instance \(self.name) \(done)." : "Instance \(self.name) \(APIClientOptions.text(answer?["status"])).")
            }
        }
    }

    struct Stop: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop an instance (its process gets SIGTERM, then SIGKILL after 10 s).")
        @OptionGroup var options: PowerOptions
        func run() async throws { try await self.options.request("stop", until: "stopped", done: "stopped") }
    }

    struct Start: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Start a stopped instance.")
        @OptionGroup var options: PowerOptions
        func run() async throws { try await self.options.request("start", until: "ready", done: "started") }
    }

    struct Reboot: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Restart a running instance's process.")
        @OptionGroup var options: PowerOptions
        func run() async throws { try await self.options.request("reboot", until: "ready", done: "rebooted") }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete an instance and its container.")
        @Argument(help: "The name.") var name: String
        @Flag(help: "Wait until it is gone.") var wait = false
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            try await ResourceClient(self.client).delete(Instances.path(self.name), noun: "Instance", name: self.name, wait: self.wait)
        }
    }
}

/// `cloud deployments`: replicas of one instance that are replaced when they fail.
struct Deployments: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Deployments: a number of identical instances, replaced when they fail, exit or lose their host.",
        subcommands: [Create.self, List.self, Show.self, Scale.self, Update.self, Events.self, Delete.self], defaultSubcommand: List.self)

    static let columns = [
        ("NAME", "name"), ("STATUS", "status"), ("READY", "ready_replicas"), ("REPLICAS", "replicas"), ("REVISION", "revision"),
        ("UPDATED", "updated_replicas"), ("IMAGE", "image"), ("TYPE", "type"), ("REASON", "status_reason"),
    ]

    static func path(_ name: String) -> String { "/compute/deployments/" + name.addingPercentEncodingForQuery() }

    /// Polls until the deployment runs all its replicas.
    static func waitReady(_ resources: ResourceClient, _ name: String, timeout: Duration = .seconds(600)) async throws -> JSONValue? {
        try await resources.poll(
            Deployments.path(name), timeout: timeout,
            gaveUp: { answer in
                "\(APIClientOptions.text(answer?["ready_replicas"])) of \(APIClientOptions.text(answer?["replicas"])) replicas run after "
                    + "\(timeout.components.seconds) seconds (\(APIClientOptions.text(answer?["status_reason"]))); `--wait` gave up"
            }
        ) { answer -> JSONValue?? in
            guard let answer else { throw CLIError("deployment \(name) was deleted while `--wait` waited") }
            return answer["status"] == .string("ready") ? .some(answer) : nil
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a deployment of --replicas instances.",
            discussion: "cloud deployments create api --image busybox --replicas 3 --cmd \"httpd -f -p 8080\" --wait")
        @Argument(help: "The name (1 to 50 of lowercase letters, digits and -); its instances are NAME-xxxxx.") var name: String
        @Option(help: "The image.") var image: String
        @Option(help: "How many instances (0 to 100).") var replicas: Int
        @Option(help: "How many replicas a rolling update may take below --replicas running (default 1).") var maxUnavailable: Int?
        @Option(help: "How long a replica must have run before a rolling update counts it as available (default 10).") var minReadySeconds: Int?
        @Flag(help: "Wait until every replica runs.") var wait = false
        @OptionGroup var process: Instances.ProcessOptions
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            let body: [(String, JSONValue)] =
                [("name", .string(self.name)), ("image", .string(self.image)), ("replicas", .int(Int64(self.replicas)))]
                + (self.maxUnavailable.map { [("max_unavailable", .int(Int64($0)))] } ?? [])
                + (self.minReadySeconds.map { [("min_ready_seconds", .int(Int64($0)))] } ?? []) + (try self.process.members())
            let resources = ResourceClient(self.client)
            var answer = try await resources.create("/compute/deployments", body: .object(body))
            if self.wait { answer = try await Deployments.waitReady(resources, self.name) }
            self.client.emit(answer) {
                print("Deployment \(self.name): \(APIClientOptions.text(answer?["ready_replicas"])) of \(self.replicas) replicas running.")
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The tenant's deployments.")
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            let resources = ResourceClient(self.client)
            let items = try await resources.listAll("/compute/deployments", itemsKey: "deployments")
            resources.show(items, itemsKey: "deployments", columns: Deployments.columns)
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One deployment and its instances.")
        @Argument(help: "The name.") var name: String
        @OptionGroup var client: APIClientOptions

        func run() async throws { ResourceClient(self.client).showOne(try await self.client.call("GET", Deployments.path(self.name))) }
    }

    struct Scale: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Change how many replicas a deployment keeps.")
        @Argument(help: "The name.") var name: String
        @Option(help: "How many instances (0 to 100).") var replicas: Int
        @Flag(help: "Wait until that many run.") var wait = false
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            let resources = ResourceClient(self.client)
            var answer = try await self.client.call(
                "PATCH", Deployments.path(self.name), body: .object([("replicas", .int(Int64(self.replicas)))]))
            if self.wait { answer = try await Deployments.waitReady(resources, self.name) }
            self.client.emit(answer) { print("Deployment \(self.name) scaled to \(self.replicas) replicas.") }
        }
    }

    struct Update: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Change what a deployment's replicas run; a rolling update replaces them, --max-unavailable at a time.",
            discussion: """
                Any of --image, --type, --cmd (or a command after --) and --env makes a new revision; --env gives all the variables \
                (those not given go). Without --wait it returns at once: `cloud deployments events NAME` shows the update's progress.
                cloud deployments update api --image busybox2 --max-unavailable 1 --wait
                """)
        @Argument(help: "The name.") var name: String
        @Option(help: "The image.") var image: String?
        @Option(help: "How many replicas the update may take below the deployment's replicas running.") var maxUnavailable: Int?
        @Option(help: "How long a replica must have run before the update counts it as available.") var minReadySeconds: Int?
        @Flag(name: .customLong("clear-command"), help: "Run the image's own command again.") var clearCommand = false
        @Flag(help: "Wait until every replica runs the new revision.") var wait = false
        @OptionGroup var process: Instances.ProcessOptions
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            var body = try self.process.members()
            if let image { body.insert(("image", .string(image)), at: 0) }
            if let maxUnavailable { body.append(("max_unavailable", .int(Int64(maxUnavailable)))) }
            if let minReadySeconds { body.append(("min_ready_seconds", .int(Int64(minReadySeconds)))) }
            if self.clearCommand {
                guard !body.contains(where: { $0.0 == "command" }) else { throw ValidationError("give --clear-command or a command, not both") }
                body.append(("command", .array([])))
            }
            guard !body.isEmpty else {
                throw ValidationError("give what to change: --image, --type, --cmd, --env, --max-unavailable or --min-ready-seconds")
            }
            let resources = ResourceClient(self.client)
            var answer = try await self.client.call("PATCH", Deployments.path(self.name), body: .object(body))
            if self.wait { answer = try await Deployments.waitReady(resources, self.name) }
            self.client.emit(answer) {
                print(
                    "Deployment \(self.name) at revision \(APIClientOptions.text(answer?["revision"])): "
                        + "\(APIClientOptions.text(answer?["updated_replicas"])) of \(APIClientOptions.text(answer?["replicas"])) replicas run it.")
            }
        }
    }

    struct Events: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "What happened to a deployment, oldest first: replicas made, failed and replaced, scaling, updates rolled out.")
        @Argument(help: "The name.") var name: String
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            let resources = ResourceClient(self.client)
            resources.show(
                try await resources.listAll(Deployments.path(self.name) + "/events", itemsKey: "events"), itemsKey: "events",
                columns: [("TIME", "time"), ("KIND", "kind"), ("INSTANCE", "instance"), ("MESSAGE", "message")])
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a deployment and its instances.")
        @Argument(help: "The name.") var name: String
        @Flag(help: "Wait until it and its instances are gone.") var wait = false
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            try await ResourceClient(self.client).delete(Deployments.path(self.name), noun: "Deployment", name: self.name, wait: self.wait)
        }
    }
}

/// `cloud autoscaling`: deployments whose replicas follow their CPU use.
struct Autoscaling: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Auto-scaling groups: deployments whose number of replicas follows their mean CPU use.",
        discussion: "A group is a deployment (`cloud deployments show NAME` shows it too); the autoscaler looks every 10 s.",
        subcommands: [Create.self, List.self, Show.self, Delete.self], defaultSubcommand: List.self)

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create an auto-scaling group: --min to --max replicas, scaled towards --target-cpu percent.",
            discussion: "cloud autoscaling create workers --image busybox --min 1 --max 5 --target-cpu 60 -- sh -c 'exec worker'")
        @Argument(help: "The name (1 to 50 of lowercase letters, digits and -).") var name: String
        @Option(help: "The image.") var image: String
        @Option(help: "The fewest replicas.") var min: Int
        @Option(help: "The most replicas.") var max: Int
        @Option(help: "The mean CPU use to scale towards, in percent of a replica's vCPUs (1 to 100).") var targetCpu: Int
        @OptionGroup var process: Instances.ProcessOptions
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            let body: [(String, JSONValue)] = [
                ("name", .string(self.name)), ("image", .string(self.image)), ("min_replicas", .int(Int64(self.min))),
                ("max_replicas", .int(Int64(self.max))), ("target_cpu_percent", .int(Int64(self.targetCpu))),
            ] + (try self.process.members())
            let answer = try await ResourceClient(self.client).create("/compute/deployments", body: .object(body))
            self.client.emit(answer) {
                print("Auto-scaling group \(self.name) created: \(self.min) to \(self.max) replicas towards \(self.targetCpu)% CPU.")
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The tenant's auto-scaling groups.")
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            let resources = ResourceClient(self.client)
            let items = try await resources.listAll("/compute/deployments", itemsKey: "deployments").filter { $0["target_cpu_percent"] != nil && $0["target_cpu_percent"] != .null }
            let columns = [
                ("NAME", "name"), ("REPLICAS", "replicas"), ("READY", "ready_replicas"), ("MIN", "min_replicas"), ("MAX", "max_replicas"),
                ("TARGET_CPU", "target_cpu_percent"), ("CPU", "cpu_percent"), ("STATUS", "status"),
            ]
            resources.show(items, itemsKey: "deployments", columns: columns)
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One group, its CPU use and its instances.")
        @Argument(help: "The name.") var name: String
        @OptionGroup var client: APIClientOptions

        func run() async throws { ResourceClient(self.client).showOne(try await self.client.call("GET", Deployments.path(self.name))) }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a group and its instances.")
        @Argument(help: "The name.") var name: String
        @Flag(help: "Wait until it and its instances are gone.") var wait = false
        @OptionGroup var client: APIClientOptions

        func run() async throws {
            try await ResourceClient(self.client).delete(Deployments.path(self.name), noun: "Auto-scaling group", name: self.name, wait: self.wait)
        }
    }
}
