import Foundation

/// The tenant's S3 settings in the CLI config file: `s3_endpoint`, `s3_access_key`, `s3_secret_key`
/// (the file is written with mode 0600). Kept apart so that the config file's format can change
/// without touching the storage commands.
enum StorageConfig {
    static let endpointKey = "s3_endpoint"
    static let accessKeyKey = "s3_access_key"
    static let secretKeyKey = "s3_secret_key"
    static let regionKey = "s3_region"

    /// The saved S3 settings (absent keys are missing).
    static func load() -> [String: String] {
        let values = ClientConfig.load().values
        return values.filter { [endpointKey, accessKeyKey, secretKeyKey, regionKey].contains($0.key) }
    }

    /// Saves the tenant's S3 endpoint and key pair.
    static func save(endpoint: String, accessKey: String, secretKey: String, region: String) throws {
        var config = ClientConfig.load()
        config.values[endpointKey] = endpoint
        config.values[accessKeyKey] = accessKey
        config.values[secretKeyKey] = secretKey
        config.values[regionKey] = region
        try config.save()
    }

    /// Forgets the saved key pair when it is `accessKey` (it was deleted); returns whether it was.
    static func forget(accessKey: String) throws -> Bool {
        var config = ClientConfig.load()
        guard config.values[accessKeyKey] == accessKey else { return false }
        config.values[accessKeyKey] = nil
        config.values[secretKeyKey] = nil
        try config.save()
        return true
    }

    /// Where the settings are written.
    static var path: String { ClientConfig.path }
}
