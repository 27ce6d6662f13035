import ArgumentParser
import Foundation
import ServiceContract

/// The shape every service's commands share (`cloud <resource> create|list|show|update|delete`):
/// creates carry an `Idempotency-Key` (so a retried command never makes two), lists follow
/// `next_token` to the end, `--wait` polls an asynchronous resource until it is `ready` or `failed`
/// with a progress line. Output follows `-o table|json|yaml` like every command.
struct ResourceClient {
    let options: APIClientOptions

    init(_ options: APIClientOptions) { self.options = options }

    /// `POST path` with a fresh `Idempotency-Key`, retried once with the same key when the control
    /// plane could not be reached or answered 5xx (the key makes the retry safe).
    func create(_ path: String, body: JSONValue) async throws -> JSONValue? {
        let key = "cli-" + UUID().uuidString.lowercased()
        do {
            return try await self.options.call("POST", path, body: body, headers: [("Idempotency-Key", key)])
        } catch let error as CLIError where error.status.map({ $0 >= 500 }) ?? error.description.hasPrefix("cannot reach") {
            try await Task.sleep(for: .seconds(1))
            return try await self.options.call("POST", path, body: body, headers: [("Idempotency-Key", key)])
        }
    }

    /// `--attribute NAME=VALUE` options (or another `option`'s) as a JSON object's members (string values).
    static func attributes(_ pairs: [String], option: String = "--attribute") throws -> [(String, JSONValue)] {
        try pairs.map { pair in
            guard let equals = pair.firstIndex(of: "="), equals != pair.startIndex else {
                throw ValidationError("\(option) takes NAME=VALUE, not \(pair)")
            }
            return (String(pair[..<equals]), .string(String(pair[pair.index(after: equals)...])))
        }
    }

    /// Every item of a paginated list: follows `next_token` until the last page.
    func listAll(_ path: String, itemsKey: String, query: [String] = []) async throws -> [JSONValue] {
        var items: [JSONValue] = []
        var token: String?
        repeat {
            var parameters = query + ["limit=1000"]
            if let token { parameters.append("next_token=" + token.addingPercentEncodingForQuery()) }
            let page = try await self.options.call("GET", path + "?" + parameters.joined(separator: "&"))
            if case .array(let found) = page?[itemsKey] { items += found }
            if case .string(let next) = page?["next_token"] { token = next } else { token = nil }
        } while token != nil
        return items
    }

    /// Polls `path` every 500 ms until `decide` returns a value (a 404 answer reaches it as nil: the
    /// resource is gone), printing the resource's `status` on a terminal with `progress`; after
    /// `timeout` it throws with `gaveUp` of the last answer.
    func poll<T>(
        _ path: String, timeout: Duration = .seconds(600), progress: Bool = false, gaveUp: (JSONValue?) -> String,
        _ decide: (JSONValue?) throws -> T?
    ) async throws -> T {
        let start = ContinuousClock.now
        let terminal = progress && isatty(STDERR_FILENO) == 1
        while true {
            let answer: JSONValue?
            do {
                answer = try await self.options.call("GET", path)
            } catch let error as CLIError where error.status == 404 {
                answer = nil
            }
            if terminal {
                let seconds = Int((ContinuousClock.now - start).components.seconds)
                FileHandle.standardError.write(Data("\r\u{1B}[K\(APIClientOptions.text(answer?["status"]))… \(seconds)s".utf8))
            }
            let decided: T?
            do {
                decided = try decide(answer)
            } catch {
                if terminal { FileHandle.standardError.write(Data("\n".utf8)) }
                throw error
            }
            if let decided {
                if terminal { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
                return decided
            }
            guard ContinuousClock.now - start < timeout else {
                if terminal { FileHandle.standardError.write(Data("\n".utf8)) }
                throw CLIError(gaveUp(answer))
            }
            try await Task.sleep(for: .milliseconds(500))
        }
    }

    /// Polls `path` until the resource's `status` is one of `targets` (returns it) or `failed` (throws
    /// with `status_reason`), printing a progress line on a terminal; gives up after `timeout`.
    func wait(_ path: String, until targets: Set<String> = [ResourceStatus.ready.rawValue], timeout: Duration = .seconds(600)) async throws -> JSONValue? {
        try await self.poll(
            path, timeout: timeout, progress: true,
            gaveUp: { "still \(APIClientOptions.text($0?["status"])) after \(timeout.components.seconds) seconds; `--wait` gave up (it goes on in the background)" }
        ) { resource -> JSONValue?? in
            guard let resource else { throw CLIError("it was deleted while `--wait` waited") }
            let status: String = if case .string(let status) = resource["status"] { status } else { "unknown" }
            if targets.contains(status) { return .some(resource) }
            if status == ResourceStatus.failed.rawValue {
                let reason: String = if case .string(let reason) = resource["status_reason"] { reason } else { "no reason given" }
                throw CLIError("the resource failed: \(reason)")
            }
            return nil
        }
    }

    /// Polls `path` until it answers 404: a deleted resource is gone.
    func waitUntilGone(_ path: String, timeout: Duration = .seconds(600)) async throws {
        try await self.poll(
            path, timeout: timeout,
            gaveUp: { _ in "still there after \(timeout.components.seconds) seconds; `--wait` gave up (the delete goes on in the background)" }
        ) { answer -> Void? in answer == nil ? () : nil }
    }

    /// `DELETE path` of an asynchronous resource and, with `wait`, polls until it is gone; prints
    /// "NOUN NAME deleted." (or "deleting."), or the answer as JSON/YAML.
    func delete(_ path: String, noun: String, name: String, wait: Bool) async throws {
        let answer = try await self.options.call("DELETE", path)
        if wait { try await self.waitUntilGone(path) }
        self.options.emit(wait ? .object([("deleted", .string(name))]) : answer) {
            print(wait ? "\(noun) \(name) deleted." : "\(noun) \(name) deleting.")
        }
    }

    /// Prints a list as a table of `columns` (header, key), or as JSON/YAML `{itemsKey: [...]}`.
    func show(_ items: [JSONValue], itemsKey: String, columns: [(String, String)]) {
        self.options.show(.object([(itemsKey, .array(items))]), rows: { _ in items }, columns: columns)
    }

    /// Prints one resource: `name: value` lines for a table, else JSON/YAML.
    func showOne(_ value: JSONValue?) {
        guard self.options.format == .table, case .object(let members) = value else {
            self.options.emit(value) {}
            return
        }
        let width = (members.map(\.0.count).max() ?? 0) + 2
        for (name, item) in members {
            let text: String
            switch item {
            case .object, .array: text = item.serialized()
            default: text = APIClientOptions.text(item)
            }
            print("\((name + ":").padding(toLength: width, withPad: " ", startingAt: 0))\(text)")
        }
    }
}
