#if canImport(FoundationEssentials)
public import FoundationEssentials
#else
public import Foundation
#endif
import Hashing

/// Client-side signing, for tests and tools that talk to the server (the server only verifies).
extension SigV4 {
    /// Headers a signer leaves unsigned (as botocore does).
    public static let unsignedHeaderNames: Set<String> = [
        "authorization", "user-agent", "expect", "transfer-encoding", "x-amzn-trace-id",
    ]

    /// Signs `head` with an `Authorization` header.
    ///
    /// Adds `x-amz-date` and `x-amz-content-sha256` (replacing existing ones), then signs every header
    /// present except ``unsignedHeaderNames``. A `host` header MUST already be present.
    /// - Parameters:
    ///   - head: The request to sign, modified in place.
    ///   - accessKey: Access key ID.
    ///   - secretKey: Secret access key.
    ///   - region: Scope region.
    ///   - now: Signing time.
    ///   - payload: The `x-amz-content-sha256` mode (`.sha256(hex:)` of the body, or a streaming mode).
    ///   - service: The scope service (`s3`; `sqs` for the queues' endpoint).
    /// - Returns: The signing context (seed signature) for encoding an `aws-chunked` body.
    @discardableResult
    public static func sign(
        _ head: inout RequestHead, accessKey: String, secretKey: String, region: String, now: Date,
        payload: PayloadMode = .sha256(hex: emptySHA256Hex), service: String = "s3"
    ) -> SigningContext {
        let amzDate = AmzDate.formatISO8601Basic(now)
        head.headers.removeAll {
            asciiCaseInsensitiveEqual($0.name, "x-amz-date") || asciiCaseInsensitiveEqual($0.name, "x-amz-content-sha256")
                || asciiCaseInsensitiveEqual($0.name, "authorization")
        }
        head.headers.append(("x-amz-date", amzDate))
        head.headers.append(("x-amz-content-sha256", payload.headerValue))
        let signed = Set(head.headers.map { asciiLowercased($0.name) }).subtracting(unsignedHeaderNames).sorted()
        let credential = Credential(
            accessKey: accessKey, date: String(amzDate.prefix(8)), region: region, service: service,
            signedHeaders: signed, signature: "", amzDate: amzDate, requestDate: now, isPresigned: false,
            expires: nil, payloadMode: payload, hashedPayload: payload.headerValue)
        let key = signingKey(secretKey: secretKey, date: credential.date, region: region, service: service)
        let toSign = stringToSign(
            canonicalRequest: canonicalRequest(head, credential: credential), amzDate: amzDate, scope: credential.scope)
        let signature = Hex.encode(Digests.hmacSHA256(key: key, message: Array(toSign.utf8)))
        head.headers.append((
            "Authorization",
            "\(algorithm) Credential=\(accessKey)/\(credential.scope), SignedHeaders=\(signed.joined(separator: ";")), "
                + "Signature=\(signature)"
        ))
        return SigningContext(signingKey: key, scope: credential.scope, amzDate: amzDate, seedSignature: signature)
    }

    /// Presigns `head` by appending the `X-Amz-*` query parameters (signing only `host`, payload
    /// `UNSIGNED-PAYLOAD`).
    /// - Parameters:
    ///   - head: The request to presign; its `rawQuery` is extended in place. A `host` header MUST be present.
    ///   - accessKey: Access key ID.
    ///   - secretKey: Secret access key.
    ///   - region: Scope region.
    ///   - now: Signing time.
    ///   - expires: Validity in seconds (1...604800).
    public static func presign(
        _ head: inout RequestHead, accessKey: String, secretKey: String, region: String, now: Date, expires: Int
    ) {
        let amzDate = AmzDate.formatISO8601Basic(now)
        let scope = "\(amzDate.prefix(8))/\(region)/s3/aws4_request"
        let parameters: [(String, String)] = [
            ("X-Amz-Algorithm", algorithm), ("X-Amz-Credential", "\(accessKey)/\(scope)"), ("X-Amz-Date", amzDate),
            ("X-Amz-Expires", String(expires)), ("X-Amz-SignedHeaders", "host"),
        ]
        let encoded = parameters.map {
            uriEncode($0.0.utf8, keepSlash: false) + "=" + uriEncode($0.1.utf8, keepSlash: false)
        }.joined(separator: "&")
        head.rawQuery = head.rawQuery.isEmpty ? encoded : head.rawQuery + "&" + encoded
        let credential = Credential(
            accessKey: accessKey, date: String(amzDate.prefix(8)), region: region, service: "s3",
            signedHeaders: ["host"], signature: "", amzDate: amzDate, requestDate: now, isPresigned: true,
            expires: expires, payloadMode: .unsigned, hashedPayload: "UNSIGNED-PAYLOAD")
        head.rawQuery += "&X-Amz-Signature=" + signature(for: head, credential: credential, secretKey: secretKey)
    }

    /// Encodes `payload` as an `aws-chunked` body (client side), for tests.
    /// - Parameters:
    ///   - payload: The decoded body.
    ///   - chunkSize: Data bytes per chunk (> 0).
    ///   - mode: A streaming mode.
    ///   - signing: The context from ``sign(_:accessKey:secretKey:region:now:payload:)`` (signed modes).
    ///   - trailers: Trailing headers (trailer modes), e.g. `[("x-amz-checksum-crc32", "…")]`.
    /// - Returns: The wire bytes, including the closing CRLF.
    public static func encodeChunked(
        _ payload: [UInt8], chunkSize: Int, mode: PayloadMode, signing: SigningContext?,
        trailers: [(name: String, value: String)] = []
    ) -> [UInt8] {
        precondition(chunkSize > 0, "chunkSize MUST be positive")
        let signed = (mode == .streamingSigned || mode == .streamingSignedTrailer)
        var previous = signing?.seedSignature ?? ""
        var out: [UInt8] = []
        var offset = 0
        repeat {
            let end = min(payload.count, offset + chunkSize)
            let chunk = Array(payload[offset..<end])
            var header = String(chunk.count, radix: 16)
            if signed, let signing {
                previous = Hex.encode(signing.chunkSignature(previousSignature: previous, chunkSHA256: Digests.sha256(chunk)))
                header += ";chunk-signature=" + previous
            }
            out += Array((header + "\r\n").utf8)
            if !chunk.isEmpty { out += chunk + Array("\r\n".utf8) }
            offset = end
            if chunk.isEmpty { break }
        } while true
        if mode.hasTrailer {
            for trailer in trailers { out += Array("\(trailer.name):\(trailer.value)\r\n".utf8) }
            if mode == .streamingSignedTrailer, let signing, !trailers.isEmpty {
                let signature = signing.trailerSignature(
                    previousSignature: previous, canonicalTrailers: canonicalTrailers(trailers))
                out += Array("x-amz-trailer-signature:\(Hex.encode(signature))\r\n".utf8)
            }
        }
        out += Array("\r\n".utf8)
        return out
    }
}
