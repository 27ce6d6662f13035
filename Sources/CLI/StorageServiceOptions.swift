import ArgumentParser
import ControlPlane
import ServiceContract
import Storage
import Foundation

/// The storage cluster a control plane manages, for `cloud server` (`cloud dev` uses its own node):
/// `--storage-endpoint`, `--storage-access-key`, `--storage-secret-key` (or `CLOUD_STORAGE_*`, so
/// that the secret stays out of the process list).
struct StorageServiceOptions: ParsableArguments {
    @Option(help: "S3 address of any node of the storage cluster, e.g. http://10.0.0.5:9000 (default: $CLOUD_STORAGE_ENDPOINT).")
    var storageEndpoint: String?

    @Option(help: "The storage cluster's root access key (default: $CLOUD_STORAGE_ACCESS_KEY).")
    var storageAccessKey: String?

    @Option(help: "The storage cluster's root secret key (default: $CLOUD_STORAGE_SECRET_KEY; prefer the variable).")
    var storageSecretKey: String?

    @Option(help: "The S3 endpoint users are told to use (default: --storage-endpoint).")
    var storagePublicEndpoint: String?

    @Option(help: "The storage cluster's region.")
    var storageRegion: String = "us-east-1"

    /// The settings, or nil when no endpoint is given (the `/storage` routes then answer 503).
    /// - Throws: `ValidationError` when an endpoint is given without the root key, or is not a URL.
    func configuration(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> StorageServiceConfiguration? {
        func pick(_ option: String?, _ variable: String) -> String? {
            for value in [option, environment[variable]] { if let value, !value.isEmpty { return value } }
            return nil
        }
        guard let endpoint = pick(self.storageEndpoint, "CLOUD_STORAGE_ENDPOINT") else { return nil }
        let configuration = StorageServiceConfiguration(
            endpoint: endpoint, accessKey: pick(self.storageAccessKey, "CLOUD_STORAGE_ACCESS_KEY") ?? "",
            secretKey: pick(self.storageSecretKey, "CLOUD_STORAGE_SECRET_KEY") ?? "", region: self.storageRegion,
            publicEndpoint: self.storagePublicEndpoint)
        do {
            try configuration.validate()
        } catch {
            throw ValidationError(error.description)
        }
        return configuration
    }
}
