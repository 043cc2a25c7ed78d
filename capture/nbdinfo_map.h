// The extent maps of an NBD export as `nbdinfo --map` reports them (backupfs-capture -q).
//
// A debugging aid, as in virtnbdbackup: the maps come from libnbd's own tool instead of our
// block-status code, so a suspected mapping bug can be told from a copying one.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "capture/block_status.h"
#include "capture/nbd_source.h"
#include "stream/status.h"

namespace backupfs {

// Runs nbdinfo once per context the options ask for (base:allocation, the dirty context).
Result<BlockStatusMaps> QueryWithNbdinfo(const NbdConnectOptions& options, uint64_t size);

// nbd+unix:///EXPORT?socket=PATH with both parts percent-encoded.
std::string NbdUnixUri(const std::string& export_name, const std::string& socket);

// The URI of `export_name` at `endpoint` for libnbd's tools: NbdUnixUri for a socket,
// nbd://HOST:PORT/EXPORT over TCP, nbds://HOST:PORT/EXPORT?tls-certificates=DIR over TLS (the
// tools verify the server's certificate against DIR/ca-cert.pem, as ConnectNbd does).
std::string NbdUri(const std::string& export_name, const NbdEndpoint& endpoint);

// Parses nbdinfo's --json --map output ([{"offset":..,"length":..,"type":..}, ...]) into
// `maps`: the allocation for base:allocation, dirty ranges for any other context. Every
// extent must follow the previous one and stay within `size`.
Status ParseNbdinfoMap(std::string_view json, const std::string& context, uint64_t size,
                       BlockStatusMaps& maps);

}  // namespace backupfs
