public import Foundation
#if canImport(FoundationNetworking)
public import FoundationNetworking
#endif
import Hashing
import SigV4

/// An S3 endpoint and the key that signs requests to it.
public struct S3Endpoint: Sendable, Equatable {
    /// `http://host:port` (a path, if any, is ignored).
    public var url: String
    public var accessKey: String
    public var secretKey: String
    /// The region in the signature's scope.
    public var region: String

    public init(url: String, accessKey: String, secretKey: String, region: String = "us-east-1") {
        self.url = url
        self.accessKey = accessKey
        self.secretKey = secretKey
        self.region = region
    }
}

/// A failure to talk to the endpoint: it cannot be reached, or the URL is not one.
public struct SignedClientError: Error, Sendable, CustomStringConvertible {
    public var description: String

    public init(_ description: String) { self.description = description }
}

/// An answer: status, headers (names lowercased) and body.
public struct SignedResponse: Sendable {
    public var status: Int
    public var headers: [String: String]
    public var body: Data

    public var text: String { String(decoding: self.body, as: UTF8.self) }

    /// The `<Code>` of an S3 error document, or the `error.code` of an admin JSON error.
    public var errorCode: String? {
        if let json = try? JSONSerialization.jsonObject(with: self.body) as? [String: Any],
            let error = json["error"] as? [String: Any], let code = error["code"] as? String
        {
            return code
        }
        return Self.element("Code", in: self.text)
    }

    /// The `<Message>` of an S3 error document, or the `error.message` of an admin JSON error.
    public var errorMessage: String? {
        if let json = try? JSONSerialization.jsonObject(with: self.body) as? [String: Any],
            let error = json["error"] as? [String: Any], let message = error["message"] as? String
        {
            return message
        }
        return Self.element("Message", in: self.text)
    }

    /// The text of the first `<name>` element of an XML document (no entity decoding beyond the five
    /// predefined ones).
    public static func element(_ name: String, in xml: String) -> String? {
        guard let open = xml.range(of: "<\(name)>"), let close = xml.range(of: "</\(name)>", range: open.upperBound..<xml.endIndex) else {
            return nil
        }
        return String(xml[open.upperBound..<close.lowerBound])
            .replacingOccurrences(of: "&lt;", with: "<").replacingOccurrences(of: "&gt;", with: ">")
            .replacingOccurrences(of: "&quot;", with: "\"").replacingOccurrences(of: "&apos;", with: "'")
            .replacingOccurrences(of: "&amp;", with: "&")
    }
}

/// Sends SigV4-signed HTTP requests to an S3 endpoint with URLSession: S3 operations of the CLI and
/// the storage admin API (`/_admin/…`) for `cloud storage` and the control plane.
public struct SignedClient: Sendable {
    public let endpoint: S3Endpoint
    /// Seconds before a request without an answer fails.
    public var timeout: TimeInterval

    public init(endpoint: S3Endpoint, timeout: TimeInterval = 15) {
        self.endpoint = endpoint
        self.timeout = timeout
    }

    /// `text` percent-encoded as SigV4 canonicalises a path (`/` kept) or a query value.
    public static func encode(_ text: String, keepSlash: Bool = true) -> String {
        SigV4.uriEncode(text.utf8, keepSlash: keepSlash)
    }

    /// Sends one request and returns the answer, whatever its status.
    /// - Parameters:
    ///   - rawPath: the path, already percent-encoded (``encode(_:keepSlash:)``), starting with `/`.
    ///   - query: name/value pairs, encoded here.
    ///   - body: the body, signed by its SHA-256.
    /// - Throws: ``SignedClientError`` when the endpoint is not a URL or does not answer.
    public func send(
        _ method: String, _ rawPath: String, query: [(String, String)] = [], headers: [(String, String)] = [], body: Data = Data()
    ) async throws -> SignedResponse {
        guard let base = URL(string: self.endpoint.url), let scheme = base.scheme, scheme == "http" || scheme == "https",
            let host = base.host
        else {
            throw SignedClientError("the endpoint \(self.endpoint.url) is not a URL such as http://127.0.0.1:9000")
        }
        let hostHeader = base.port.map { "\(host.contains(":") ? "[\(host)]" : host):\($0)" } ?? host
        let rawQuery = query.map { Self.encode($0.0, keepSlash: false) + "=" + Self.encode($0.1, keepSlash: false) }
            .joined(separator: "&")
        var head = SigV4.RequestHead(method: method, rawPath: rawPath, rawQuery: rawQuery, headers: [("host", hostHeader)] + headers)
        SigV4.sign(
            &head, accessKey: self.endpoint.accessKey, secretKey: self.endpoint.secretKey, region: self.endpoint.region, now: Date(),
            payload: .sha256(hex: Hex.encode(Digests.sha256(Array(body)))))
        let origin = "\(scheme)://\(hostHeader)"
        guard let url = URL(string: origin + rawPath + (rawQuery.isEmpty ? "" : "?" + rawQuery)) else {
            throw SignedClientError("cannot make a URL of \(origin)\(rawPath)")
        }
        var request = URLRequest(url: url)
        request.httpMethod = method
        for (name, value) in head.headers where name.lowercased() != "host" { request.setValue(value, forHTTPHeaderField: name) }
        if !body.isEmpty || method == "PUT" || method == "POST" { request.httpBody = body }
        request.timeoutInterval = self.timeout
        let data: Data
        let response: URLResponse
        do {
            (data, response) = try await URLSession.shared.data(for: request)
        } catch {
            throw SignedClientError("cannot reach \(origin): \(error.localizedDescription)")
        }
        guard let http = response as? HTTPURLResponse else { throw SignedClientError("\(origin) did not answer in HTTP") }
        var lowered: [String: String] = [:]
        for (name, value) in http.allHeaderFields {
            if let name = name as? String, let value = value as? String { lowered[name.lowercased()] = value }
        }
        return SignedResponse(status: http.statusCode, headers: lowered, body: data)
    }

    /// Fetches `url` without signing (health checks).
    public static func get(_ url: String, timeout: TimeInterval) async throws -> SignedResponse {
        guard let target = URL(string: url) else { throw SignedClientError("\(url) is not a URL") }
        var request = URLRequest(url: target)
        request.timeoutInterval = timeout
        let data: Data
        let response: URLResponse
        do {
            (data, response) = try await URLSession.shared.data(for: request)
        } catch {
            throw SignedClientError("cannot reach \(url): \(error.localizedDescription)")
        }
        return SignedResponse(status: (response as? HTTPURLResponse)?.statusCode ?? 0, headers: [:], body: data)
    }
}
