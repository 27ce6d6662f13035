#if canImport(Glibc)
import Glibc
#endif

/// The part of the libvirt C API the backend uses, resolved from `libvirt.so.0` with `dlopen`, so
/// building needs no libvirt-dev and a host without libvirt gets an error that says so instead of
/// a binary that does not start.
///
/// Every pointer is opaque (`virConnectPtr`, `virDomainPtr`); libvirt keeps its last error per
/// thread, so a call and the read of its error happen on one thread (``Libvirt`` runs each
/// operation as one block on a Dispatch queue).
final class LibvirtLibrary: @unchecked Sendable {  // immutable after init: function pointers only
    typealias ConnectOpen = @convention(c) (UnsafePointer<CChar>?) -> OpaquePointer?
    typealias ConnectClose = @convention(c) (OpaquePointer?) -> Int32
    typealias ConnectGetLibVersion = @convention(c) (OpaquePointer?, UnsafeMutablePointer<UInt>?) -> Int32
    typealias ConnectGetCapabilities = @convention(c) (OpaquePointer?) -> UnsafeMutablePointer<CChar>?
    typealias NodeGetInfo = @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?) -> Int32
    typealias ListAllDomains = @convention(c) (OpaquePointer?, UnsafeMutablePointer<UnsafeMutablePointer<OpaquePointer?>?>?, UInt32) -> Int32
    typealias DefineXML = @convention(c) (OpaquePointer?, UnsafePointer<CChar>?) -> OpaquePointer?
    typealias LookupByName = @convention(c) (OpaquePointer?, UnsafePointer<CChar>?) -> OpaquePointer?
    typealias DomainCall = @convention(c) (OpaquePointer?) -> Int32
    typealias DomainCallFlags = @convention(c) (OpaquePointer?, UInt32) -> Int32
    typealias DomainGetState = @convention(c) (OpaquePointer?, UnsafeMutablePointer<Int32>?, UnsafeMutablePointer<Int32>?, UInt32) -> Int32
    typealias DomainGetName = @convention(c) (OpaquePointer?) -> UnsafePointer<CChar>?
    typealias DomainGetXMLDesc = @convention(c) (OpaquePointer?, UInt32) -> UnsafeMutablePointer<CChar>?
    typealias DomainDevice = @convention(c) (OpaquePointer?, UnsafePointer<CChar>?, UInt32) -> Int32
    typealias GetLastError = @convention(c) () -> UnsafeMutableRawPointer?
    typealias ErrorHandler = @convention(c) (UnsafeMutableRawPointer?, UnsafeMutableRawPointer?) -> Void
    typealias SetErrorFunc = @convention(c) (UnsafeMutableRawPointer?, ErrorHandler?) -> Void

    let connectOpen: ConnectOpen
    let connectClose: ConnectClose
    let connectGetLibVersion: ConnectGetLibVersion
    let connectGetCapabilities: ConnectGetCapabilities
    let nodeGetInfo: NodeGetInfo
    let listAllDomains: ListAllDomains
    let domainDefineXML: DefineXML
    let domainLookupByName: LookupByName
    let domainCreate: DomainCall
    let domainDestroy: DomainCall
    let domainShutdown: DomainCall
    let domainSuspend: DomainCall
    let domainResume: DomainCall
    let domainFree: DomainCall
    let domainUndefineFlags: DomainCallFlags
    let domainGetState: DomainGetState
    let domainGetName: DomainGetName
    let domainGetXMLDesc: DomainGetXMLDesc
    let domainAttachDeviceFlags: DomainDevice
    let domainDetachDeviceFlags: DomainDevice
    let getLastError: GetLastError

    /// The library of this process, or why there is none.
    static let shared: Result<LibvirtLibrary, LibvirtError> = {
        do throws(LibvirtError) { return .success(try LibvirtLibrary()) } catch { return .failure(error) }
    }()

    private init() throws(LibvirtError) {
        guard let handle = dlopen("libvirt.so.0", RTLD_NOW | RTLD_LOCAL) else {
            throw LibvirtError(.unavailable, "libvirt is not installed on this host (libvirt.so.0 not found; Debian: libvirt-daemon-system)")
        }
        func symbol<T>(_ name: String, _ type: T.Type) throws(LibvirtError) -> T {
            guard let pointer = dlsym(handle, name) else { throw LibvirtError(.unavailable, "libvirt.so.0 has no \(name): libvirt is too old") }
            return unsafeBitCast(pointer, to: type)
        }
        self.connectOpen = try symbol("virConnectOpen", ConnectOpen.self)
        self.connectClose = try symbol("virConnectClose", ConnectClose.self)
        self.connectGetLibVersion = try symbol("virConnectGetLibVersion", ConnectGetLibVersion.self)
        self.connectGetCapabilities = try symbol("virConnectGetCapabilities", ConnectGetCapabilities.self)
        self.nodeGetInfo = try symbol("virNodeGetInfo", NodeGetInfo.self)
        self.listAllDomains = try symbol("virConnectListAllDomains", ListAllDomains.self)
        self.domainDefineXML = try symbol("virDomainDefineXML", DefineXML.self)
        self.domainLookupByName = try symbol("virDomainLookupByName", LookupByName.self)
        self.domainCreate = try symbol("virDomainCreate", DomainCall.self)
        self.domainDestroy = try symbol("virDomainDestroy", DomainCall.self)
        self.domainShutdown = try symbol("virDomainShutdown", DomainCall.self)
        self.domainSuspend = try symbol("virDomainSuspend", DomainCall.self)
        self.domainResume = try symbol("virDomainResume", DomainCall.self)
        self.domainFree = try symbol("virDomainFree", DomainCall.self)
        self.domainUndefineFlags = try symbol("virDomainUndefineFlags", DomainCallFlags.self)
        self.domainGetState = try symbol("virDomainGetState", DomainGetState.self)
        self.domainGetName = try symbol("virDomainGetName", DomainGetName.self)
        self.domainGetXMLDesc = try symbol("virDomainGetXMLDesc", DomainGetXMLDesc.self)
        self.domainAttachDeviceFlags = try symbol("virDomainAttachDeviceFlags", DomainDevice.self)
        self.domainDetachDeviceFlags = try symbol("virDomainDetachDeviceFlags", DomainDevice.self)
        self.getLastError = try symbol("virGetLastError", GetLastError.self)
        // libvirt prints every error to stderr unless a handler takes them; errors reach callers
        // through ``lastError(_:)`` instead.
        let setErrorFunc = try symbol("virSetErrorFunc", SetErrorFunc.self)
        setErrorFunc(nil, { _, _ in })
    }

    /// The calling thread's last libvirt error (`virError`: `int code; int domain; char *message; …`).
    func lastError(_ doing: String) -> LibvirtError {
        guard let error = self.getLastError() else { return LibvirtError(.failed, "\(doing): libvirt gave no reason") }
        let code = error.load(as: Int32.self)
        let message = error.load(fromByteOffset: 8, as: UnsafePointer<CChar>?.self).map { String(cString: $0) } ?? "no message"
        return LibvirtError(LibvirtError.Kind(code: code), "\(doing): \(message)")
    }
}

/// What went wrong talking to libvirt.
public struct LibvirtError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// The library or the daemon is not there (the host is unreachable, not the request wrong).
        case unavailable
        /// No domain of that name.
        case noDomain
        /// The domain is not running (or already is) for what was asked.
        case invalidState
        /// A file of the machine (image, disk) could not be made.
        case files
        case failed

        /// `virErrorNumber`: 38 VIR_ERR_SYSTEM_ERROR (a socket that does not answer), 42 VIR_ERR_NO_DOMAIN,
        /// 55 VIR_ERR_OPERATION_INVALID, 1 VIR_ERR_INTERNAL_ERROR.
        init(code: Int32) {
            switch code {
            case 38: self = .unavailable
            case 42: self = .noDomain
            case 55: self = .invalidState
            default: self = .failed
            }
        }
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { self.message.hasPrefix("libvirt") ? self.message : "libvirt: \(self.message)" }
}
