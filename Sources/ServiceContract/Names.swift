import Foundation

extension String {
    /// Whether this is 1 to `maxLength` bytes of ASCII letters, digits and the characters of `extra`:
    /// the shape of every service's resource names (queues, topics, schedules, secrets, batch ids).
    public func isName(maxLength: Int, allowing extra: String = "-_") -> Bool {
        !self.isEmpty && self.utf8.count <= maxLength
            && self.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || extra.unicodeScalars.contains($0)) }
    }

    /// Whether this is an absolute `http` or `https` URL with a host (webhooks, cron's HTTP targets).
    public var isHTTPURL: Bool {
        guard let url = URL(string: self), let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https" else { return false }
        return url.host?.isEmpty == false
    }
}
