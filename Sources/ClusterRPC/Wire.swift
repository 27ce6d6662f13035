import HostAddress
import Hashing
import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Names, signatures and small parsers of the wire protocol (described at the top of ClusterRPC.swift).
enum Wire {
    static let pathPrefix = "/rpc/"
    static let timeHeader = "x-cloud-time"
    static let signatureHeader = "x-cloud-signature"
    static let errorCodeHeader = "x-cloud-error-code"
    /// The status of a reply whose handler threw `RPCRemoteError`.
    static let remoteErrorStatus = 409
    /// The status of a reply whose handler threw anything else.
    static let internalErrorStatus = 500
    static let internalErrorCode = "InternalError"
    static let internalErrorMessage = "internal error"
    static let maxNameLength = 128

    /// Whether `name` may be a method name or an error code: 1...128 of `A-Z a-z 0-9 . _ -`.
    static func isValidName(_ name: some StringProtocol) -> Bool {
        let utf8 = name.utf8
        guard !utf8.isEmpty, utf8.count <= self.maxNameLength else { return false }
        return utf8.allSatisfy(self.isNameByte)
    }

    @inline(__always)
    static func isNameByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"):
            return true
        default:
            return false
        }
    }

    /// `code` made safe for a header and the string-to-sign: invalid characters become `_`, at most
    /// 128 characters, `InternalError` when empty.
    static func sanitizedCode(_ code: String) -> String {
        if self.isValidName(code) { return code }
        let bytes = code.utf8.prefix(self.maxNameLength).map { self.isNameByte($0) ? $0 : UInt8(ascii: "_") }
        if bytes.isEmpty { return self.internalErrorCode }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The method named by a request path `/rpc/<method>`, or `nil`.
    static func method(fromPath uri: String) -> String? {
        guard uri.hasPrefix(self.pathPrefix) else { return nil }
        let name = uri.dropFirst(self.pathPrefix.count)
        guard self.isValidName(name) else { return nil }
        return String(name)
    }

    /// SHA-256 of the readable bytes of `buffer`.
    static func digest(_ buffer: ByteBuffer) -> [UInt8] {
        buffer.withUnsafeReadableBytes { Digests.sha256($0) }
    }

    /// The request signature: HMAC-SHA256(secret, "<method>\n<time>\n<hex sha256(body)>").
    static func requestSignature(secret: [UInt8], method: String, time: Int64, bodyDigest: [UInt8]) -> [UInt8] {
        Digests.hmacSHA256(key: secret, message: "\(method)\n\(time)\n\(Hex.encode(bodyDigest))")
    }

    /// The reply signature: the request's string-to-sign (with the request's time and the reply body's
    /// digest) plus "\n<status>\n<error code>".
    static func replySignature(
        secret: [UInt8],
        method: String,
        time: Int64,
        bodyDigest: [UInt8],
        status: Int,
        errorCode: String
    ) -> [UInt8] {
        Digests.hmacSHA256(
            key: secret,
            message: "\(method)\n\(time)\n\(Hex.encode(bodyDigest))\n\(status)\n\(errorCode)"
        )
    }

    /// Whether the hex `signature` header holds `expected`, compared in constant time.
    static func signatureMatches(_ signature: String?, expected: [UInt8]) -> Bool {
        guard let signature, signature.utf8.count == expected.count * 2, let bytes = Hex.decode(signature) else {
            return false
        }
        return constantTimeEqual(bytes, expected)
    }

    /// The wall clock, in milliseconds since 1970.
    static func unixMillisNow() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
    }

    /// Splits "host:port" or "[v6 address]:port"; `nil` when malformed or the host is empty.
    static func parseAddress(_ address: String) -> (host: String, port: Int)? {
        guard let (host, port) = HostPort.split(address), !host.isEmpty else { return nil }
        return (host, port)
    }

    /// A `Duration` in whole milliseconds (rounded down).
    static func milliseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}
