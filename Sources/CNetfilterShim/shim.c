// SwiftPM needs one source file per C target; the shim is header-only.
#include "vpm_netfilter_shim.h"
