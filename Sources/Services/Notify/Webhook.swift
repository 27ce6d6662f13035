import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Hashing

/// The signature on every webhook delivery, for receivers to check that it came from this platform
/// and was not changed or replayed:
///
///     X-Cloud-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
///
/// A receiver recomputes the HMAC over the timestamp, a dot and the raw body with the
/// subscription's secret, compares in constant time, and refuses timestamps far from its clock
/// (5 minutes is usual).
enum WebhookSignature {
    static let header = "X-Cloud-Signature"

    /// The header's value for `body` sent at `time` (unix seconds).
    static func sign(body: [UInt8], secret: String, time: Int64) -> String {
        "t=\(time),v1=\(Hex.encode(Self.mac(body: body, secret: secret, time: time)))"
    }

    static func mac(body: [UInt8], secret: String, time: Int64) -> [UInt8] {
        Digests.hmacSHA256(key: Array(secret.utf8), message: Array("\(time).".utf8) + body)
    }

    /// Whether `header` signs `body` with `secret` at a time within `tolerance` seconds of `now` (what
    /// a receiver does; the tests check deliveries with it).
    static func verify(header: String, body: [UInt8], secret: String, now: Int64, tolerance: Int64 = 300) -> Bool {
        var time: Int64?
        var signature: [UInt8]?
        for part in header.split(separator: ",") {
            if part.hasPrefix("t=") { time = Int64(part.dropFirst(2)) }
            if part.hasPrefix("v1=") { signature = Hex.decode(part.dropFirst(3)) }
        }
        guard let time, let signature, abs(now - time) <= tolerance else { return false }
        let expected = Self.mac(body: body, secret: secret, time: time)
        guard expected.count == signature.count else { return false }
        return zip(expected, signature).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }
}

/// What a webhook's receiver answered.
struct WebhookAnswer: Sendable {
    var status: Int
}

/// Posts webhook deliveries.
protocol WebhookPoster: Sendable {
    /// Posts `body` to `url` with `headers`; throws when no HTTP answer came (refused, timed out).
    func post(_ url: String, headers: [(String, String)], body: [UInt8], timeout: Duration) async throws -> WebhookAnswer
}

/// Posts with URLSession: no redirects are followed (a redirect answer is a failed delivery, so a
/// receiver cannot bounce deliveries to another address).
struct URLSessionPoster: WebhookPoster {
    final class NoRedirects: NSObject, URLSessionTaskDelegate, Sendable {
        func urlSession(
            _ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse, newRequest request: URLRequest,
            completionHandler: @escaping @Sendable (URLRequest?) -> Void
        ) {
            completionHandler(nil)
        }
    }

    static let session = URLSession(configuration: .ephemeral, delegate: NoRedirects(), delegateQueue: nil)

    func post(_ url: String, headers: [(String, String)], body: [UInt8], timeout: Duration) async throws -> WebhookAnswer {
        guard let target = URL(string: url) else { throw NotifyError.invalidEndpoint(url) }
        var request = URLRequest(url: target, timeoutInterval: Double(timeout.components.seconds))
        request.httpMethod = "POST"
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        request.httpBody = Data(body)
        let (_, response) = try await Self.session.data(for: request)
        return WebhookAnswer(status: (response as? HTTPURLResponse)?.statusCode ?? 0)
    }
}
