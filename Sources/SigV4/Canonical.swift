/// Canonical-request construction (AWS SigV4 step 1), following the S3 rules.
extension SigV4 {
    /// `UInt8` → two uppercase hex digits.
    private static let upperHex: [UInt8] = Array("0123456789ABCDEF".utf8)

    @inline(__always)
    private static func isUnreserved(_ c: UInt8) -> Bool {
        (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39)
            || c == UInt8(ascii: "-") || c == UInt8(ascii: ".") || c == UInt8(ascii: "_") || c == UInt8(ascii: "~")
    }

    /// S3 `UriEncode`: unreserved bytes (`A-Za-z0-9-._~`) are kept, `/` is kept when `keepSlash`,
    /// every other byte becomes `%XX` with uppercase hex.
    /// - Parameters:
    ///   - bytes: The decoded (raw) bytes.
    ///   - keepSlash: `true` for the path, `false` for query names and values.
    /// - Returns: The encoded text.
    public static func uriEncode(_ bytes: some Sequence<UInt8>, keepSlash: Bool) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.underestimatedCount * 3 / 2 + 8)
        for c in bytes {
            if isUnreserved(c) || (keepSlash && c == UInt8(ascii: "/")) {
                out.append(c)
            } else {
                out.append(UInt8(ascii: "%"))
                out.append(upperHex[Int(c >> 4)])
                out.append(upperHex[Int(c & 0x0F)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Percent-decodes `text`. A `%` not followed by two hex digits is kept literally (lenient, as S3 is).
    /// - Parameters:
    ///   - text: Encoded text.
    ///   - plusAsSpace: Decode `+` as a space (query strings, form encoding).
    /// - Returns: The decoded bytes.
    public static func percentDecode(_ text: some StringProtocol, plusAsSpace: Bool) -> [UInt8] {
        let utf8 = Array(text.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(utf8.count)
        var i = 0
        while i < utf8.count {
            let c = utf8[i]
            if c == UInt8(ascii: "%"), i + 2 < utf8.count,
                let hi = hexValue(utf8[i + 1]), let lo = hexValue(utf8[i + 2])
            {
                out.append(UInt8(hi << 4 | lo))
                i += 3
            } else {
                out.append(plusAsSpace && c == UInt8(ascii: "+") ? UInt8(ascii: " ") : c)
                i += 1
            }
        }
        return out
    }

    /// The canonical URI: the decoded path re-encoded with ``uriEncode(_:keepSlash:)``; `/` when empty.
    /// S3 neither normalises dot segments nor double-encodes.
    public static func canonicalURI(rawPath: String) -> String {
        if rawPath.isEmpty { return "/" }
        return uriEncode(percentDecode(rawPath, plusAsSpace: false), keepSlash: true)
    }

    /// Splits one raw `name=value` query segment at its first `=`; a segment without `=` has the value `""`.
    static func splitParameter(_ segment: Substring) -> (name: Substring, value: Substring) {
        guard let eq = segment.utf8.firstIndex(of: UInt8(ascii: "=")) else { return (segment, "") }
        return (segment[..<eq], segment[segment.utf8.index(after: eq)...])
    }

    /// Splits a raw query into decoded `(name, value)` pairs, in order. Empty segments (`&&`) are skipped;
    /// a segment without `=` has the value `""`.
    public static func decodeQuery(_ rawQuery: String) -> [(name: String, value: String)] {
        var pairs: [(name: String, value: String)] = []
        for segment in rawQuery[...].splitASCII(UInt8(ascii: "&"), omittingEmpty: true) {
            let (name, value) = splitParameter(segment)
            pairs.append((
                String(decoding: percentDecode(name, plusAsSpace: true), as: UTF8.self),
                String(decoding: percentDecode(value, plusAsSpace: true), as: UTF8.self)
            ))
        }
        return pairs
    }

    /// The canonical query string: every parameter's decoded name and value re-encoded, sorted by encoded
    /// name then encoded value (byte order), joined as `name=value` with `&` (`name=` for empty values).
    /// - Parameters:
    ///   - rawQuery: The query as on the wire.
    ///   - excludingSignature: Drop `X-Amz-Signature` (presigned requests).
    public static func canonicalQuery(rawQuery: String, excludingSignature: Bool) -> String {
        if rawQuery.isEmpty { return "" }
        var encoded: [(name: [UInt8], value: [UInt8])] = []
        for segment in rawQuery[...].splitASCII(UInt8(ascii: "&"), omittingEmpty: true) {
            let (name, value) = splitParameter(segment)
            let decodedName = percentDecode(name, plusAsSpace: true)
            if excludingSignature && decodedName.elementsEqual("X-Amz-Signature".utf8) { continue }
            encoded.append((
                Array(uriEncode(decodedName, keepSlash: false).utf8),
                Array(uriEncode(percentDecode(value, plusAsSpace: true), keepSlash: false).utf8)
            ))
        }
        encoded.sort { a, b in
            if a.name != b.name { return a.name.lexicographicallyPrecedes(b.name) }
            return a.value.lexicographicallyPrecedes(b.value)
        }
        var out: [UInt8] = []
        for (index, pair) in encoded.enumerated() {
            if index > 0 { out.append(UInt8(ascii: "&")) }
            out += pair.name
            out.append(UInt8(ascii: "="))
            out += pair.value
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// A header value in canonical form: leading and trailing whitespace removed, inner runs of
    /// whitespace (space, tab, CR, LF) collapsed to one space.
    public static func canonicalHeaderValue(_ value: String) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(value.utf8.count)
        var pendingSpace = false
        for c in value.utf8 {
            if c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D {
                pendingSpace = !out.isEmpty
            } else {
                if pendingSpace { out.append(0x20) }
                pendingSpace = false
                out.append(c)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The canonical headers block: for each signed name in the given order, `name:value\n`, where value is
    /// every field of that name (case-insensitive) in canonical form joined with `,`. A signed header that
    /// is absent contributes `name:\n`.
    public static func canonicalHeaders(_ head: RequestHead, signedHeaders: [String]) -> String {
        var out = ""
        for name in signedHeaders {
            out += name
            out += ":"
            out += head.values(name).map(canonicalHeaderValue).joined(separator: ",")
            out += "\n"
        }
        return out
    }

    /// The full canonical request (SigV4 step 1):
    /// `method \n uri \n query \n headers \n signedHeaders \n hashedPayload`.
    ///
    /// The result MUST NOT be logged at levels above debug nor put in error messages.
    public static func canonicalRequest(_ head: RequestHead, credential: Credential) -> String {
        [
            head.method,
            canonicalURI(rawPath: head.rawPath),
            canonicalQuery(rawQuery: head.rawQuery, excludingSignature: credential.isPresigned),
            canonicalHeaders(head, signedHeaders: credential.signedHeaders),
            credential.signedHeaders.joined(separator: ";"),
            credential.hashedPayload,
        ].joined(separator: "\n")
    }
}
