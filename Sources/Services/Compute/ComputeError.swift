import ServiceContract

/// The compute service's errors, mapped to their wire errors in one place (``apiError``).
enum ComputeError: Error, APIErrorConvertible {
    case invalidName(String)
    case instanceNotFound(String)
    case instanceExists(String)
    case imageNotFound(String)
    case imageExists(String)
    case imageInUse(String, instances: Int64)
    case invalidImage(String)
    case unknownType(String)
    case unknownBackend(String)
    case hostNotFound(String)
    case hostExists(String)
    case hostInUse(String, instances: Int64)
    case invalidState(name: String, state: InstanceState, action: String)
    case imagesUnavailable
    case deploymentExists(String)
    case deploymentNotFound(String)
    case deploymentDeleting(String)
    case deploymentAutoscaled(String)
    case engine(String)
    /// The instance's backend cannot do what was asked (the reason says what can).
    case unsupported(String)
    case invalidSSHKey(String)
    case sshKeyNotFound(String)
    case sshKeyExists(String)
    case volumesUnavailable
    /// Why volumes cannot be LVM logical volumes here.
    case lvmUnavailable(String)
    case snapshotsUnavailable
    case volumeNotFound(String)
    case volumeExists(String)
    case volumeState(String, VolumeState, String)
    case snapshotNotFound(String)
    case snapshotExists(String)
    case snapshotState(String, SnapshotState, String)

    var apiError: APIError {
        switch self {
        case .invalidName(let name):
            .invalidRequest("'\(name)' is not a valid name: 1 to 63 of lowercase letters, digits and -, starting with a letter")
        case .instanceNotFound(let name): APIError(status: 404, code: "instance_not_found", message: "no instance '\(name)'")
        case .instanceExists(let name): .conflict("instance_exists", "an instance '\(name)' exists")
        case .imageNotFound(let name): APIError(status: 404, code: "image_not_found", message: "no image '\(name)'")
        case .imageExists(let name): .conflict("image_exists", "an image '\(name)' exists")
        case .imageInUse(let name, let count): .conflict("image_in_use", "image '\(name)' is used by \(count) instance(s) or deployment(s)")
        case .invalidImage(let why): APIError(status: 400, code: "invalid_image", message: why)
        case .unknownType(let name):
            APIError(
                status: 400, code: "unknown_instance_type",
                message: "no instance type '\(name)' (types: \(InstanceType.all.map(\.name).joined(separator: ", ")))")
        case .unknownBackend(let name):
            APIError(status: 400, code: "unknown_backend", message: "no backend '\(name)' (backends: docker, libvirt)")
        case .hostNotFound(let name): APIError(status: 404, code: "host_not_found", message: "no compute host '\(name)'")
        case .hostExists(let name): .conflict("host_exists", "a compute host '\(name)' exists")
        case .hostInUse(let name, let count):
            .conflict("host_in_use", "compute host '\(name)' has \(count) instance(s); delete them first")
        case .invalidState(let name, let state, let action):
            .conflict("invalid_state", "instance '\(name)' is \(state.rawValue) and cannot \(action) now")
        case .deploymentExists(let name): .conflict("deployment_exists", "a deployment '\(name)' exists")
        case .deploymentNotFound(let name): APIError(status: 404, code: "deployment_not_found", message: "no deployment '\(name)'")
        case .deploymentDeleting(let name): .conflict("invalid_state", "deployment '\(name)' is being deleted")
        case .deploymentAutoscaled(let name):
            .conflict("invalid_state", "deployment '\(name)' auto-scales: its replicas follow its CPU use between min_replicas and max_replicas")
        case .imagesUnavailable: APIError(status: 503, code: "images_unavailable", message: "no object store is configured for images")
        case .engine(let message): APIError(status: 502, code: "engine_error", message: message)
        case .unsupported(let why): .conflict("unsupported_by_backend", why)
        case .invalidSSHKey(let why): APIError(status: 400, code: "invalid_ssh_key", message: why)
        case .sshKeyNotFound(let name): APIError(status: 404, code: "ssh_key_not_found", message: "no SSH key '\(name)'")
        case .sshKeyExists(let name): .conflict("ssh_key_exists", "an SSH key '\(name)' exists")
        case .volumesUnavailable:
            APIError(status: 503, code: "volumes_unavailable", message: "this control plane has no volume directory (cloud server --volumes-dir)")
        case .lvmUnavailable(let why): APIError(status: 503, code: "lvm_unavailable", message: why)
        case .snapshotsUnavailable: APIError(status: 503, code: "snapshots_unavailable", message: "no object store is configured for snapshots")
        case .volumeNotFound(let name): APIError(status: 404, code: "volume_not_found", message: "no volume '\(name)'")
        case .volumeExists(let name): .conflict("volume_exists", "a volume '\(name)' exists")
        case .volumeState(let name, let state, let action): .conflict("invalid_state", "volume '\(name)' is \(state.rawValue) and cannot \(action) now")
        case .snapshotNotFound(let name): APIError(status: 404, code: "snapshot_not_found", message: "no snapshot '\(name)'")
        case .snapshotExists(let name): .conflict("snapshot_exists", "a snapshot '\(name)' exists")
        case .snapshotState(let name, let state, let action):
            .conflict("invalid_state", "snapshot '\(name)' is \(state.rawValue) and cannot \(action) now")
        }
    }
}
