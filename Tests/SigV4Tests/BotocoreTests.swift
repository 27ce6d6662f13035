import Foundation
import Hashing
import NIOCore
import SigV4
import Testing

/// Requests signed by botocore 1.43 (pure-Python and awscrt signers), captured on the wire.
@Suite struct BotocoreTests {
    @Test(arguments: pyHeaderVectors + crtHeaderVectors)
    func headerSigned(vector: WireVector) throws {
        let (credential, context) = try parseAndVerify(vector.head)
        #expect(!credential.isPresigned)
        #expect(credential.accessKey == exampleAccessKey)
        #expect(context.amzDate == "20130524T000000Z")
        if vector.name.contains("session-token") {
            #expect(credential.securityToken == "FQoGZXIvYXdzEXAMPLETOKEN/+=")
        }
    }

    @Test(arguments: pyHeaderVectors + crtHeaderVectors)
    func tamperingIsDetected(vector: WireVector) {
        var head = vector.head
        head.method = head.method == "GET" ? "PUT" : "GET"
        expectSigV4Error(.signatureDoesNotMatch) { () throws(SigV4Error) in try parseAndVerify(head) }

        head = vector.head
        head.rawPath += "x"
        expectSigV4Error(.signatureDoesNotMatch) { () throws(SigV4Error) in try parseAndVerify(head) }

        head = vector.head
        head.rawQuery += head.rawQuery.isEmpty ? "acl" : "&acl"
        expectSigV4Error(.signatureDoesNotMatch) { () throws(SigV4Error) in try parseAndVerify(head) }

        // Changing a signed header breaks the signature; an unsigned one does not matter.
        head = vector.head
        if let index = head.headers.firstIndex(where: { $0.name.lowercased() == "host" }) {
            head.headers[index].value = "evil.example.com"
            expectSigV4Error(.signatureDoesNotMatch) { () throws(SigV4Error) in try parseAndVerify(head) }
        }
        head = vector.head
        head.headers.removeAll { $0.name.lowercased() == "user-agent" || $0.name.hasPrefix("amz-sdk") }
        head.headers.append(("User-Agent", "something else"))
        #expect(throws: Never.self) { try parseAndVerify(head) }
    }

    @Test(arguments: pyPresignedVectors + crtPresignedVectors)
    func presigned(vector: WireVector) throws {
        let (credential, _) = try parseAndVerify(vector.head)
        #expect(credential.isPresigned)
        #expect(credential.payloadMode == .unsigned)
        #expect(credential.signedHeaders == ["host"])
        if vector.name.contains("session-token") {
            #expect(credential.securityToken == "FQoGZXIvYXdzEXAMPLETOKEN/+=")
        }
        let expires = try #require(credential.expires)
        expectSigV4Error(.accessDenied) { () throws(SigV4Error) in
            try parseAndVerify(vector.head, now: exampleNow + Double(expires) + 1)
        }
        var head = vector.head
        head.rawQuery = head.rawQuery.replacingOccurrences(of: "X-Amz-Expires=", with: "X-Amz-Expires=1")
        expectSigV4Error(.signatureDoesNotMatch) { () throws(SigV4Error) in try parseAndVerify(head) }
    }

    @Test(arguments: pyStreamingVectors + crtStreamingVectors, [Split.whole, .byteByByte, .random(seed: 9)])
    func unsignedTrailerStream(vector: StreamingVector, split: Split) throws {
        let head = vector.wire.head
        let (credential, context) = try parseAndVerify(head)
        #expect(credential.payloadMode == .streamingUnsignedTrailer)
        let declared = head.values("x-amz-trailer").flatMap { $0.split(separator: ",") }
            .map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        let decodedLength = try #require(head.value("x-amz-decoded-content-length").flatMap { Int($0) })
        let (payload, trailers) = try decode(
            vector.body, split: split, mode: credential.payloadMode, signing: context, declaredTrailers: declared,
            decodedContentLength: decodedLength)
        #expect(payload.count == decodedLength)
        #expect(trailers.count == 1)
        let trailer = try #require(trailers.first)
        let algorithm = try #require(ChecksumAlgorithm(headerName: trailer.name))
        #expect(Base64.encode(algorithm.checksum(of: payload)) == trailer.value)
    }
}
