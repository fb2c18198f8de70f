/* stats.h -- what the statistics (stats.c) share with the Prometheus
 * exposition (metrics_prom.c).
 * @internal */
#ifndef UP_STATS_H
#define UP_STATS_H
#include <stdint.h>

#include "handle.h"
#include "upulsar/upulsar.h"

/** The failed_by[] slot of @p err (0: none of the others). @thread any */
unsigned up_stats_err_slot(upulsar_err_t err);
/** The error of slot @p slot (UPULSAR_OK for slot 0). @thread any */
upulsar_err_t up_stats_slot_err(unsigned slot);
/** A group's state as upulsar_producer_groups() reports it. @thread any */
upulsar_producer_state_t up_stats_group_state(up_group_t *g);
/** The largest latency (us) bucket @p idx of the latency histogram holds.
 *  @thread any */
uint64_t up_stats_lat_upper(unsigned idx);

#endif
