import Testing

@testable import ComputeAgent
@testable import DockerEngine

@Suite struct AgentTests {
    @Test func theTokenIsTheWholeBearerValue() {
        let token = String(repeating: "ab", count: 32)
        let head = "GET /v1.41/info HTTP/1.1\r\nHost: docker\r\nauthorization:  Bearer \(token)\r\nConnection: close"
        #expect(EngineProxy.authorization(inHead: head) == "Bearer \(token)"[...])
        #expect(EngineProxy.authorizes(EngineProxy.authorization(inHead: head), token: token))
        #expect(!EngineProxy.authorizes("Bearer \(token.dropLast())"[...], token: token), "a prefix is not the token")
        #expect(!EngineProxy.authorizes("Bearer \(token)x"[...], token: token), "nor is a longer one")
        #expect(!EngineProxy.authorizes("Basic \(token)"[...], token: token))
        #expect(!EngineProxy.authorizes(nil, token: token))
        // A header named in the request line or a body does not count: only header lines do.
        #expect(EngineProxy.authorization(inHead: "GET /Authorization: HTTP/1.1\r\nHost: docker") == nil)
    }

    @Test func engineAddressesAreSocketsOrAgents() {
        #expect(DockerEngine.address("unix:///run/docker.sock") == .unix(path: "/run/docker.sock"))
        #expect(DockerEngine.address("/run/docker.sock") == .unix(path: "/run/docker.sock"))
        #expect(DockerEngine.address("tcp://10.0.0.5:2377") == .tcp(host: "10.0.0.5", port: 2377))
        #expect(DockerEngine.address("tcp://[::1]:2377") == .tcp(host: "::1", port: 2377))
        #expect(DockerEngine.address("tcp://nowhere") == .tcp(host: "nowhere", port: 0))
        #expect(DockerEngine(socket: "tcp://[::1]:2377", token: "t").socketPath == "tcp://[::1]:2377")
        #expect(DockerEngine(socket: "unix:///run/docker.sock").socketPath == "unix:///run/docker.sock")
    }
}
