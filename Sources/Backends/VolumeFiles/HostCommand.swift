import Foundation

/// Runs one of the host's own tools (`mount`, `mkfs.ext4`, `fsfreeze`, …) and waits for it without
/// holding a Swift concurrency thread: the wait happens on a Dispatch queue.
package enum HostCommand {
    /// What a tool printed and how it ended.
    package struct Outcome: Sendable {
        package var status: Int32
        /// Its stdout and stderr, in one (the tools used here write little).
        package var output: String
    }

    /// Runs `arguments[0]` (looked up in the standard system directories) with the rest.
    /// - Throws: ``VolumeError`` when the tool is missing or cannot start.
    package static func run(_ arguments: [String]) async throws -> Outcome {
        guard let tool = Self.locate(arguments[0]) else {
            throw VolumeError.tool("\(arguments[0]) is not installed on this host (Debian: \(Self.package(of: arguments[0])))")
        }
        return try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async {
                continuation.resume(with: Result { try Self.runBlocking(tool, arguments) })
            }
        }
    }

    /// Runs a tool on the calling thread (for the rare step that must not interleave with another).
    package static func runBlocking(_ arguments: [String]) throws -> Outcome {
        guard let tool = Self.locate(arguments[0]) else {
            throw VolumeError.tool("\(arguments[0]) is not installed on this host (Debian: \(Self.package(of: arguments[0])))")
        }
        return try Self.runBlocking(tool, arguments)
    }

    private static func runBlocking(_ tool: String, _ arguments: [String]) throws -> Outcome {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = Array(arguments.dropFirst())
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        process.standardInput = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            throw VolumeError.tool("\(arguments[0]) could not start: \(error)")
        }
        // Read to the end first: a tool that fills the pipe would otherwise never exit.
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let output = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return Outcome(status: process.terminationStatus, output: output)
    }

    /// Runs a tool and throws with what it said unless it succeeded.
    @discardableResult
    package static func check(_ arguments: [String], doing what: String) async throws -> String {
        let outcome = try await Self.run(arguments)
        guard outcome.status == 0 else {
            throw VolumeError.tool("\(what): \(arguments[0]) exited with \(outcome.status): \(outcome.output.isEmpty ? "no message" : outcome.output)")
        }
        return outcome.output
    }

    /// The Debian package a tool comes in.
    private static func package(of tool: String) -> String {
        switch tool {
        case "qemu-img": "qemu-utils"
        case "tar": "tar"
        default: "util-linux and e2fsprogs"
        }
    }

    package static func locate(_ name: String) -> String? {
        if name.hasPrefix("/") { return FileManager.default.isExecutableFile(atPath: name) ? name : nil }
        for directory in ["/usr/sbin", "/usr/bin", "/sbin", "/bin"] where FileManager.default.isExecutableFile(atPath: directory + "/" + name) {
            return directory + "/" + name
        }
        return nil
    }
}
