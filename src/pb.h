/* pb.h -- protobuf-c generated types for the Pulsar protocol, plus short
 * aliases. @internal */
#ifndef UP_PB_H
#define UP_PB_H
#include "PulsarApi.pb-c.h"

typedef Pulsar__Proto__BaseCommand up_cmd_t;
typedef Pulsar__Proto__MessageMetadata up_md_t;
#define UP_CMD(T) PULSAR__PROTO__BASE_COMMAND__TYPE__##T
#define UP_SERR(E) PULSAR__PROTO__SERVER_ERROR__##E
#endif
