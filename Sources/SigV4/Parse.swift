#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

extension SigV4 {
    /// The only algorithm accepted.
    public static let algorithm = "AWS4-HMAC-SHA256"
    /// Longest presigned validity S3 accepts: 7 days, in seconds.
    public static let maxPresignedExpires = 604_800

    private static let credentialFormat =
        "expecting \"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\"."

    /// Reads the request's authentication without needing any secret.
    ///
    /// Recognises the `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…` header
    /// and presigned URLs (`X-Amz-Algorithm`, `X-Amz-Credential`, `X-Amz-Date`, `X-Amz-Expires`,
    /// `X-Amz-SignedHeaders`, `X-Amz-Signature`, optional `X-Amz-Security-Token`).
    /// Checks syntax, the scope (service `s3`, terminator `aws4_request`, scope date = request date),
    /// that `host` is signed, and the `x-amz-content-sha256` value. Time and signature are checked by
    /// ``verify(_:head:secretKey:now:maxSkew:)``.
    /// - Parameter head: The request head as received.
    /// - Returns: `.anonymous` when the request carries no signature at all, else the parsed credential.
    /// - Throws: ``SigV4Error`` with `AuthorizationHeaderMalformed`, `AuthorizationQueryParametersError`,
    ///   `InvalidRequest`, `InvalidArgument`, `AccessDenied` or `MissingSecurityHeader`.
    public static func parse(_ head: RequestHead) throws(SigV4Error) -> ParsedAuth {
        let authorization = head.values("authorization")
        let query = decodeQuery(head.rawQuery)
        func queryValues(_ name: String) -> [String] { query.compactMap { $0.name == name ? $0.value : nil } }
        let hasV4Query = !queryValues("X-Amz-Algorithm").isEmpty || !queryValues("X-Amz-Credential").isEmpty
            || !queryValues("X-Amz-Signature").isEmpty
        let hasV2Query = !queryValues("AWSAccessKeyId").isEmpty && !queryValues("Signature").isEmpty

        if !authorization.isEmpty && (hasV4Query || hasV2Query) {
            throw SigV4Error(
                .invalidArgument,
                "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query "
                    + "string parameter or the Authorization header should be specified")
        }
        if authorization.count > 1 {
            throw SigV4Error(.invalidArgument, "Only one Authorization header may be specified.")
        }
        if let header = authorization.first {
            return .signed(try parseAuthorizationHeader(header, head: head))
        }
        if hasV4Query {
            return .signed(try parsePresigned(queryValues, head: head))
        }
        if hasV2Query {
            throw unsupportedMechanism()
        }
        return .anonymous
    }

    /// Reads the `Authorization` header of a request to an AWS service other than S3 (SQS, for the
    /// queues service's endpoint): the scope must name `service`, and the payload line of the canonical
    /// request is `bodySHA256` (these services sign the body's hash and send no `x-amz-content-sha256`;
    /// when a client sends it anyway, it must equal the body's hash). Presigned URLs are not accepted.
    /// - Parameters:
    ///   - head: The request head as received.
    ///   - service: The scope service this endpoint belongs to (`sqs`).
    ///   - bodySHA256: Lowercase hex SHA-256 of the whole body.
    /// - Returns: `.anonymous` without an `Authorization` header, else the parsed credential.
    public static func parse(_ head: RequestHead, service: String, bodySHA256: String) throws(SigV4Error) -> ParsedAuth {
        let authorization = head.values("authorization")
        if authorization.count > 1 {
            throw SigV4Error(.invalidArgument, "Only one Authorization header may be specified.")
        }
        guard let header = authorization.first else { return .anonymous }
        if let sent = head.value("x-amz-content-sha256"), canonicalHeaderValue(sent).lowercased() != bodySHA256 {
            throw SigV4Error(.invalidArgument, "x-amz-content-sha256 is not the SHA-256 of the body.")
        }
        return .signed(try parseAuthorizationHeader(header, head: head, service: service, bodySHA256: bodySHA256))
    }

    private static func unsupportedMechanism() -> SigV4Error {
        SigV4Error(
            .invalidRequest,
            "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256.")
    }

    /// Splits `AKID/date/region/service/aws4_request` (the key itself may not contain `/`).
    private static func parseScope(
        _ text: String, service: String = "s3", malformed: (String) -> SigV4Error
    ) throws(SigV4Error) -> (accessKey: String, date: String, region: String, service: String) {
        let parts = text[...].splitASCII(UInt8(ascii: "/"), omittingEmpty: false).map(String.init)
        guard parts.count == 5, !parts[0].isEmpty, !parts[2].isEmpty,
            parts[1].utf8.count == 8, parts[1].utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 })
        else {
            throw malformed("the Credential is mal-formed; \(credentialFormat)")
        }
        guard parts[3] == service else {
            throw malformed("incorrect service \"\(parts[3].prefix(40))\". This endpoint belongs to \"\(service)\".")
        }
        guard parts[4] == "aws4_request" else {
            throw malformed("incorrect terminal \"\(parts[4])\". This endpoint uses \"aws4_request\".")
        }
        return (parts[0], parts[1], parts[2], parts[3])
    }

    private static func parseSignedHeaders(
        _ text: String, malformed: (String) -> SigV4Error
    ) throws(SigV4Error) -> [String] {
        let names = text[...].splitASCII(UInt8(ascii: ";"), omittingEmpty: false).map { asciiLowercased($0) }
        guard !names.isEmpty, names.allSatisfy({ !$0.isEmpty && !$0.utf8.contains(where: { $0 <= 0x20 }) }) else {
            throw malformed("the SignedHeaders component is malformed.")
        }
        guard names.contains("host") else {
            throw SigV4Error(
                .accessDenied, "There were headers present in the request which were not signed",
                detail: "HeadersNotSigned: host")
        }
        return names
    }

    /// Reads `x-amz-content-sha256` into a payload mode.
    private static func payloadMode(
        _ head: RequestHead, required: Bool
    ) throws(SigV4Error) -> (mode: PayloadMode, hashed: String)? {
        let values = head.values("x-amz-content-sha256")
        guard let value = values.first else {
            if required {
                throw SigV4Error(.invalidRequest, "Missing required header for this request: x-amz-content-sha256")
            }
            return nil
        }
        if values.count > 1 {
            throw SigV4Error(.invalidArgument, "x-amz-content-sha256 must be specified only once.")
        }
        let trimmed = canonicalHeaderValue(value)
        guard let mode = PayloadMode(headerValue: trimmed) else {
            if trimmed.hasPrefix("STREAMING-AWS4-ECDSA") {
                throw unsupportedMechanism()
            }
            throw SigV4Error(
                .invalidArgument,
                "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER, "
                    + "STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER "
                    + "or a valid sha256 value.")
        }
        return (mode, trimmed)
    }

    private static func parseAuthorizationHeader(
        _ header: String, head: RequestHead, service: String = "s3", bodySHA256: String? = nil
    ) throws(SigV4Error) -> Credential {
        let malformed = { (reason: String) in
            SigV4Error(.authorizationHeaderMalformed, "The authorization header is malformed; \(reason)")
        }
        let text = canonicalHeaderValue(header)
        guard let space = text.utf8.firstIndex(of: 0x20) else {
            if text.hasPrefix("AWS4-") { throw malformed("the authorization header requires three components.") }
            throw unsupportedMechanism()
        }
        let scheme = text[..<space]
        guard scheme == algorithm else {
            if scheme == "AWS" || scheme.hasPrefix("AWS4-ECDSA") { throw unsupportedMechanism() }
            throw malformed("the authorization mechanism \"\(scheme.prefix(40))\" is not supported; use AWS4-HMAC-SHA256.")
        }
        var credentialText: String?
        var signedHeadersText: String?
        var signatureText: String?
        for component in text[text.utf8.index(after: space)...].splitASCII(UInt8(ascii: ","), omittingEmpty: true) {
            let part = component.trimmingASCIISpaces()
            guard let eq = part.utf8.firstIndex(of: UInt8(ascii: "=")) else {
                throw malformed("the authorization component \"\(part.prefix(40))\" is malformed.")
            }
            let key = part[..<eq].trimmingASCIISpaces()
            let value = String(part[part.utf8.index(after: eq)...].trimmingASCIISpaces())
            switch key {
            case "Credential" where credentialText == nil: credentialText = value
            case "SignedHeaders" where signedHeadersText == nil: signedHeadersText = value
            case "Signature" where signatureText == nil: signatureText = value
            default:
                throw malformed("the authorization component \"\(key.prefix(40))\" is unexpected or repeated.")
            }
        }
        guard let credentialText, let signedHeadersText, let signatureText else {
            throw malformed("the authorization header requires the Credential, SignedHeaders and Signature components.")
        }
        let scope = try parseScope(credentialText, service: service, malformed: malformed)
        let signedHeaders = try parseSignedHeaders(signedHeadersText, malformed: malformed)
        guard signatureText.utf8.count == 64, signatureText.utf8.allSatisfy(isHexDigit) else {
            throw malformed("the Signature component must be 64 hexadecimal characters.")
        }

        // Request time: x-amz-date, else the Date header.
        let requestDate: Date
        let amzDate: String
        if let value = head.value("x-amz-date") {
            guard let date = AmzDate.parseISO8601Basic(canonicalHeaderValue(value)) else {
                throw SigV4Error(.accessDenied, "AWS authentication requires a valid Date or x-amz-date header")
            }
            requestDate = date
            amzDate = canonicalHeaderValue(value)
        } else if let value = head.value("date"), let date = AmzDate.parseHTTPDate(canonicalHeaderValue(value)) {
            requestDate = date
            amzDate = AmzDate.formatISO8601Basic(date)
        } else {
            throw SigV4Error(.accessDenied, "AWS authentication requires a valid Date or x-amz-date header")
        }
        guard amzDate.hasPrefix(scope.date) else {
            throw malformed(
                "Invalid credential date \"\(scope.date)\". This date is not the same as X-Amz-Date: \"\(amzDate.prefix(8))\".")
        }
        let payload: (mode: PayloadMode, hashed: String)
        if let bodySHA256 {
            payload = (.sha256(hex: bodySHA256), bodySHA256)
        } else if let sent = try payloadMode(head, required: true) {
            payload = sent
        } else {
            throw SigV4Error(.invalidRequest, "Missing required header for this request: x-amz-content-sha256")
        }
        return Credential(
            accessKey: scope.accessKey, date: scope.date, region: scope.region, service: scope.service,
            signedHeaders: signedHeaders, signature: signatureText.lowercased(), amzDate: amzDate,
            requestDate: requestDate, isPresigned: false, expires: nil, payloadMode: payload.mode,
            hashedPayload: payload.hashed, securityToken: head.value("x-amz-security-token"))
    }

    private static func parsePresigned(
        _ queryValues: (String) -> [String], head: RequestHead
    ) throws(SigV4Error) -> Credential {
        let malformed = { (reason: String) in
            SigV4Error(.authorizationQueryParametersError, "Error parsing the X-Amz-Credential parameter; \(reason)")
        }
        func single(_ name: String) throws(SigV4Error) -> String {
            let values = queryValues(name)
            guard values.count == 1 else {
                if values.isEmpty {
                    throw SigV4Error(
                        .authorizationQueryParametersError,
                        "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, "
                            + "X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters.")
                }
                throw SigV4Error(.authorizationQueryParametersError, "\(name) must be specified only once.")
            }
            return values[0]
        }
        let algorithmValue = try single("X-Amz-Algorithm")
        let credentialText = try single("X-Amz-Credential")
        let signatureText = try single("X-Amz-Signature")
        let dateText = try single("X-Amz-Date")
        let signedHeadersText = try single("X-Amz-SignedHeaders")
        let expiresText = try single("X-Amz-Expires")
        guard algorithmValue == algorithm else {
            throw SigV4Error(.authorizationQueryParametersError, "X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\"")
        }
        let scope = try parseScope(credentialText, malformed: malformed)
        let signedHeaders = try parseSignedHeaders(signedHeadersText) { reason in
            SigV4Error(.authorizationQueryParametersError, "Error parsing the X-Amz-SignedHeaders parameter; \(reason)")
        }
        guard signatureText.utf8.count == 64, signatureText.utf8.allSatisfy(isHexDigit) else {
            throw SigV4Error(
                .authorizationQueryParametersError, "X-Amz-Signature must be 64 hexadecimal characters.")
        }
        guard let requestDate = AmzDate.parseISO8601Basic(dateText) else {
            throw SigV4Error(
                .authorizationQueryParametersError,
                "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"")
        }
        guard dateText.hasPrefix(scope.date) else {
            throw malformed(
                "Invalid credential date \"\(scope.date)\". This date is not the same as X-Amz-Date: \"\(dateText.prefix(8))\".")
        }
        guard expiresText.utf8.count <= 7, expiresText.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
            let expires = Int(expiresText)
        else {
            if expiresText.hasPrefix("-") {
                throw SigV4Error(.authorizationQueryParametersError, "X-Amz-Expires must be non-negative")
            }
            throw SigV4Error(
                .authorizationQueryParametersError,
                "X-Amz-Expires should be a number of seconds between 1 and 604800")
        }
        guard expires >= 1 else {
            throw SigV4Error(.authorizationQueryParametersError, "X-Amz-Expires must be at least 1 second")
        }
        guard expires <= maxPresignedExpires else {
            throw SigV4Error(
                .authorizationQueryParametersError,
                "X-Amz-Expires must be less than a week (in seconds) that is 604800")
        }
        // Presigned URLs sign UNSIGNED-PAYLOAD unless the client sent (and signed) x-amz-content-sha256.
        var mode = PayloadMode.unsigned
        var hashed = "UNSIGNED-PAYLOAD"
        if let payload = try payloadMode(head, required: false) {
            (mode, hashed) = payload
        } else if let fromQuery = queryValues("X-Amz-Content-Sha256").first {
            guard let parsed = PayloadMode(headerValue: fromQuery) else {
                throw SigV4Error(.invalidArgument, "X-Amz-Content-Sha256 has an invalid value.")
            }
            (mode, hashed) = (parsed, fromQuery)
        }
        let token = queryValues("X-Amz-Security-Token").first ?? head.value("x-amz-security-token")
        return Credential(
            accessKey: scope.accessKey, date: scope.date, region: scope.region, service: scope.service,
            signedHeaders: signedHeaders, signature: signatureText.lowercased(), amzDate: dateText,
            requestDate: requestDate, isPresigned: true, expires: expires, payloadMode: mode,
            hashedPayload: hashed, securityToken: token)
    }

    /// Checks the credential's scope region against the region this endpoint serves.
    /// - Throws: `AuthorizationHeaderMalformed` (or `AuthorizationQueryParametersError` for presigned URLs)
    ///   naming the expected region, as S3 does.
    public static func checkRegion(_ credential: Credential, expected: String) throws(SigV4Error) {
        guard credential.region != expected else { return }
        let message = "the region '\(credential.region.prefix(64))' is wrong; expecting '\(expected)'"
        if credential.isPresigned {
            throw SigV4Error(.authorizationQueryParametersError, "Error parsing the X-Amz-Credential parameter; \(message)")
        }
        throw SigV4Error(.authorizationHeaderMalformed, "The authorization header is malformed; \(message)")
    }
}

extension Substring {
    /// Drops leading and trailing ASCII spaces and tabs (byte-wise, no grapheme breaking).
    func trimmingASCIISpaces() -> Substring {
        var start = utf8.startIndex, end = utf8.endIndex
        while start < end, utf8[start] == 0x20 || utf8[start] == 0x09 { utf8.formIndex(after: &start) }
        while end > start {
            let before = utf8.index(before: end)
            guard utf8[before] == 0x20 || utf8[before] == 0x09 else { break }
            end = before
        }
        return self[start..<end]
    }

    /// Splits at every `separator` byte (an ASCII character), byte-wise: much faster than `split` on
    /// `Character`s, and equivalent for ASCII separators.
    func splitASCII(_ separator: UInt8, omittingEmpty: Bool) -> [Substring] {
        var pieces: [Substring] = []
        var start = utf8.startIndex
        var index = start
        while index < utf8.endIndex {
            if utf8[index] == separator {
                if !(omittingEmpty && start == index) { pieces.append(self[start..<index]) }
                start = utf8.index(after: index)
            }
            utf8.formIndex(after: &index)
        }
        if !(omittingEmpty && start == utf8.endIndex) { pieces.append(self[start..<utf8.endIndex]) }
        return pieces
    }
}
