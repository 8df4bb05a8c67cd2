import Foundation

/// A copy of Debian's nginx, configured like any other with `listen 9000` (both families), serving files
/// from its own folder and logging the port it served on (`$server_port`, which nginx
/// takes from getsockname() of the accepted socket). Used by `vpm demo` and the tests.
public struct NginxSite {
    public let root: String
    public var accessLog: String { "\(root)/access.log" }
    public var configuration: String { "\(root)/nginx.conf" }
    /// The command line that runs it (in the foreground unless made with `daemon: true`).
    public var command: [String] { ["nginx", "-p", root, "-c", configuration] }
    /// The command line that stops it as an operator would: `nginx -s quit` (its pid file).
    public var stopCommand: [String] { command + ["-s", "quit"] }

    /// Writes the configuration and `index.html` (with `content`) under `root`. `daemon`:
    /// nginx's own default (`daemon on;`), where it forks into the background.
    public init(root: String, port: UInt16 = 9000, content: String, daemon: Bool = false) throws {
        self.root = root
        try FileManager.default.createDirectory(atPath: "\(root)/www", withIntermediateDirectories: true)
        try content.write(toFile: "\(root)/www/index.html", atomically: true, encoding: .utf8)
        try """
            daemon \(daemon ? "on" : "off");
            master_process on;
            worker_processes 2;
            pid \(root)/nginx.pid;
            error_log \(root)/error.log;
            events { worker_connections 64; }
            http {
                log_format vpm '$remote_addr $server_port "$request" $status';
                access_log \(root)/access.log vpm;
                client_body_temp_path \(root)/body;
                proxy_temp_path \(root)/proxy;
                fastcgi_temp_path \(root)/fastcgi;
                uwsgi_temp_path \(root)/uwsgi;
                scgi_temp_path \(root)/scgi;
                server {
                    listen \(port);
                    listen [::]:\(port);
                    root \(root)/www;
                }
            }
            """.write(toFile: configuration, atomically: true, encoding: .utf8)
    }
}
