/// vpm's version: `vpm --version`, the metrics endpoint's `vpm_info`, the Debian package.
public enum VPMVersion {
    public static let current = "0.13.0"
}
