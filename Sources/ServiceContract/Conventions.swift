import Foundation
import Hashing

/// Times on the wire: RFC 3339 in UTC.
public enum Timestamp {
    /// `2026-12-06T14:29:46Z` (whole seconds) or with milliseconds when they are not zero.
    public static func rfc3339(milliseconds: Int64) -> String {
        let date = Date(timeIntervalSince1970: TimeInterval(milliseconds) / 1000)
        if milliseconds % 1000 == 0 { return date.formatted(.iso8601) }
        return date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }

    /// From unix seconds.
    public static func rfc3339(seconds: Int64) -> String { Self.rfc3339(milliseconds: seconds * 1000) }
}

/// The page a list request asks for: `?limit=` (1…``maximumLimit``, default ``defaultLimit``) and
/// `?next_token=` (the token the previous page ended with).
///
/// Tokens are opaque to clients: base64url of the last item's sort key. A service pages with a
/// keyset query (`WHERE key > $cursor ORDER BY key LIMIT limit + 1`) and ``finish(_:key:)``.
public struct PageRequest: Sendable, Equatable {
    public static let defaultLimit = 100
    public static let maximumLimit = 1000

    public var limit: Int
    /// The sort key to continue after, decoded from `next_token`; nil for the first page.
    public var after: String?

    public init(limit: Int = PageRequest.defaultLimit, after: String? = nil) {
        self.limit = limit
        self.after = after
    }

    /// Reads `limit` and `next_token` from a query.
    /// - Throws: ``APIError`` 400 for a limit out of range or a token this API did not hand out.
    public init(query: [String: String]) throws(APIError) {
        self.limit = Self.defaultLimit
        if let text = query["limit"] {
            guard let value = Int(text), (1...Self.maximumLimit).contains(value) else {
                throw APIError.invalidRequest("limit must be 1 to \(Self.maximumLimit)")
            }
            self.limit = value
        }
        self.after = nil
        if let token = query["next_token"], !token.isEmpty {
            guard let key = Self.decode(token) else {
                throw APIError.invalidRequest("next_token is not a token this API handed out; start again without it")
            }
            self.after = key
        }
    }

    /// The rows to ask the database for: one more than the page, to learn whether another follows.
    public var fetchLimit: Int { self.limit + 1 }

    /// Cuts what a `fetchLimit` query returned to the page and the token of the next one.
    /// - Parameter key: The sort key of an item (the value the keyset query compares with `after`).
    public func finish<T>(_ fetched: [T], key: (T) -> String) -> (items: [T], nextToken: String?) {
        guard fetched.count > self.limit else { return (fetched, nil) }
        let page = Array(fetched.prefix(self.limit))
        return (page, page.last.map { Self.encode(key($0)) })
    }

    /// One page of a list held in memory, sorted by `key` (for the host's short lists).
    public func slice<T>(_ all: [T], key: (T) -> String) -> (items: [T], nextToken: String?) {
        let rest = self.after.map { after in all.filter { key($0) > after } } ?? all
        return self.finish(Array(rest.prefix(self.fetchLimit)), key: key)
    }

    static func encode(_ key: String) -> String {
        Base64.encode(Array(("k1:" + key).utf8)).replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    static func decode(_ token: String) -> String? {
        guard token.utf8.count <= 2048 else { return nil }
        var text = token.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while text.utf8.count % 4 != 0 { text += "=" }
        guard let bytes = Base64.decode(text), let decoded = String(validating: bytes, as: UTF8.self), decoded.hasPrefix("k1:") else {
            return nil
        }
        return String(decoded.dropFirst(3))
    }
}

extension RouteContext {
    /// The page this list request asks for (see ``PageRequest``).
    /// - Throws: ``APIError`` 400.
    public func page() throws(APIError) -> PageRequest { try PageRequest(query: self.request.query) }

    /// The `If-Match` header: the entity tags the client last saw (`*` matches anything).
    public var ifMatch: [String]? {
        guard let header = self.request.headers["if-match"] else { return nil }
        return header.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    /// Refuses a change when the request's `If-Match` names another version of the resource.
    /// Call it with the version read in the transaction that writes (and write with
    /// `WHERE version = $n`), so a concurrent change between the check and the write is caught too.
    /// - Throws: ``APIError`` 412 `precondition_failed`.
    public func requireMatch(version: Int64) throws(APIError) {
        guard let tags = self.ifMatch else { return }
        if tags.contains("*") || tags.contains(ETag.of(version: version)) { return }
        throw APIError.preconditionFailed(current: ETag.of(version: version))
    }
}

/// Entity tags of versioned resources: a resource's `version` (raised by every change) in quotes.
public enum ETag {
    public static func of(version: Int64) -> String { "\"\(version)\"" }
}

extension APIResponse {
    /// The answer with an `ETag` for the resource's version.
    public func tagged(version: Int64) -> APIResponse {
        var response = self
        response.headers.append(("ETag", ETag.of(version: version)))
        return response
    }
}

extension APIError {
    /// 412: the resource changed since the client read it.
    public static func preconditionFailed(current: String) -> APIError {
        var error = APIError(
            status: 412, code: "precondition_failed",
            message: "the resource changed since you read it (its ETag is now \(current)); read it again and retry")
        error.headers = [("ETag", current)]
        return error
    }
}

/// Where an asynchronous resource is in its life. Every such resource shows it as `status`, with
/// `status_reason` when it is `failed`.
///
/// `pending` (row written, its task enqueued in the same transaction) → `provisioning` (a worker
/// acts on it) → `ready`, or `failed` with the reason; `deleting` until the backend let go.
public enum ResourceStatus: String, Sendable, CaseIterable {
    case pending, provisioning, ready, failed, deleting
}
