import Foundation
import Hashing
import StorageClient
import Synchronization

/// A transfer's progress line: `45% 120.0 MiB / 256.0 MiB  35.2 MiB/s  ETA 4s`. Pure.
struct TransferProgress: Sendable, Equatable {
    var done: Int64
    var total: Int64
    /// Seconds since the transfer began.
    var elapsed: Double

    static func size(_ bytes: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(bytes)
        var unit = 0
        while value >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return unit == 0 ? "\(bytes) B" : String(format: "%.1f %@", value, units[unit])
    }

    static func duration(_ seconds: Double) -> String {
        let whole = Int(seconds.rounded(.up))
        if whole < 60 { return "\(whole)s" }
        if whole < 3600 { return "\(whole / 60)m\(String(format: "%02d", whole % 60))s" }
        return "\(whole / 3600)h\(String(format: "%02d", whole / 60 % 60))m"
    }

    var line: String {
        let percent = self.total > 0 ? Int(Double(self.done) * 100 / Double(self.total)) : 100
        var text = "\(percent)% \(Self.size(self.done)) / \(Self.size(self.total))"
        if self.elapsed > 0 && self.done > 0 {
            let rate = Double(self.done) / self.elapsed
            text += "  \(Self.size(Int64(rate)))/s"
            if self.done < self.total { text += "  ETA \(Self.duration(Double(self.total - self.done) / rate))" }
        }
        return text
    }
}

/// Shows a transfer's progress on standard error when it is a terminal (at most ten updates a second),
/// and nothing otherwise (scripts and pipes get the final line on standard output only).
final class ProgressReporter: Sendable {
    private struct State {
        var done: Int64
        var lastDrawn: ContinuousClock.Instant?
    }

    let total: Int64
    let label: String
    private let start = ContinuousClock.now
    private let state: Mutex<State>
    private let terminal = isatty(STDERR_FILENO) == 1

    init(total: Int64, already: Int64 = 0, label: String) {
        self.total = total
        self.label = label
        self.state = Mutex(State(done: already))
    }

    func add(_ bytes: Int) {
        let line: String? = self.state.withLock { state in
            state.done += Int64(bytes)
            let now = ContinuousClock.now
            guard self.terminal, state.lastDrawn.map({ now - $0 >= .milliseconds(100) }) ?? true || state.done >= self.total else { return nil }
            state.lastDrawn = now
            let elapsed = now - self.start
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            return TransferProgress(done: state.done, total: self.total, elapsed: seconds).line
        }
        if let line { FileHandle.standardError.write(Data("\r\u{1B}[K\(self.label) \(line)".utf8)) }
    }

    /// Clears the line.
    func finish() {
        if self.terminal { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
    }
}

/// Where interrupted multipart uploads are remembered so that the same `cloud storage cp` resumes
/// them: one small JSON file per (endpoint, bucket, key, local file and its size and modification
/// time) in `uploads/` beside the config file.
struct ResumeStore {
    struct Entry: Codable, Equatable {
        var uploadID: String
        var partSize: Int
    }

    let directory: String

    init(configPath: String = ConfigFile.path()) {
        self.directory = (configPath as NSString).deletingLastPathComponent + "/uploads"
    }

    /// The file for one upload: the SHA-256 of what identifies it (no secret is in it).
    func file(endpoint: String, bucket: String, key: String, localPath: String, size: Int, modified: Date) -> String {
        let absolute = URL(fileURLWithPath: localPath).standardizedFileURL.path
        let identity = [endpoint, bucket, key, absolute, String(size), String(modified.timeIntervalSince1970)].joined(separator: "\n")
        return self.directory + "/" + Hex.encode(Digests.sha256(Array(identity.utf8))).prefix(32) + ".json"
    }

    func load(_ file: String) -> Entry? {
        guard let data = FileManager.default.contents(atPath: file) else { return nil }
        return try? JSONDecoder().decode(Entry.self, from: data)
    }

    func save(_ entry: Entry, to file: String) throws {
        try FileManager.default.createDirectory(atPath: self.directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        try JSONEncoder().encode(entry).write(to: URL(fileURLWithPath: file), options: .atomic)
    }

    func remove(_ file: String) { try? FileManager.default.removeItem(atPath: file) }
}

/// Reads `count` bytes at `offset` of a file, with a handle of its own (parts are read concurrently).
func readPiece(_ path: String, offset: Int, count: Int) throws -> Data {
    guard let handle = FileHandle(forReadingAtPath: path) else { throw CLIError("cannot read \(path)") }
    defer { try? handle.close() }
    try handle.seek(toOffset: UInt64(offset))
    return try handle.read(upToCount: count) ?? Data()
}

/// Runs `work` for 0..<count with at most `width` at a time, collecting each result as it arrives
/// (`receive` runs on the caller, one at a time); the first error cancels the rest and is thrown.
func concurrently<T: Sendable>(
    _ count: Int, width: Int, _ work: @escaping @Sendable (Int) async throws -> T, receive: (Int, T) throws -> Void
) async throws {
    try await withThrowingTaskGroup(of: (Int, T).self) { group in
        var next = 0
        while next < min(width, count) {
            let index = next
            group.addTask { (index, try await work(index)) }
            next += 1
        }
        while let (index, value) = try await group.next() {
            try receive(index, value)
            if next < count {
                let index = next
                group.addTask { (index, try await work(index)) }
                next += 1
            }
        }
    }
}
