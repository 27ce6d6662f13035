import HostAddress
import NIOCore
import Synchronization

/// Socket-address helpers for gossip addresses (parsing lives in `HostAddress`).
extension HostPort {
    /// The `"ip:port"` string of a socket address (the form acks are sent back to).
    static func string(_ address: SocketAddress) -> String {
        join(host: address.ipAddress ?? "", port: address.port ?? 0)
    }

    /// `true` for a host that cannot be reached by others (`0.0.0.0`, `::`, empty).
    static func isUnspecified(_ host: String) -> Bool {
        host.isEmpty || host == "0.0.0.0" || host == "::" || host == "[::]"
    }
}

/// Resolves gossip addresses to socket addresses, remembering the answers.
///
/// Numeric addresses parse without a lookup; a host name is resolved once with the system resolver (which
/// blocks the calling thread) and cached. The cache is bounded; it is cleared when full.
final class AddressResolver: Sendable {
    private let cache = Mutex<[String: SocketAddress]>([:])
    private static let capacity = 4096

    /// The socket address of `address`, or `nil` when it is malformed or does not resolve.
    func resolve(_ address: String) -> SocketAddress? {
        if let cached = cache.withLock({ $0[address] }) { return cached }
        guard let (host, port) = HostPort.split(address), !host.isEmpty else { return nil }
        let resolved: SocketAddress
        if let numeric = try? SocketAddress(ipAddress: host, port: port) {
            resolved = numeric
        } else if let named = try? SocketAddress.makeAddressResolvingHost(host, port: port) {
            resolved = named
        } else {
            return nil
        }
        cache.withLock { cache in
            if cache.count >= Self.capacity { cache.removeAll(keepingCapacity: true) }
            cache[address] = resolved
        }
        return resolved
    }
}
