/* test_structure_layout.c -- the real producers are laid out in memory as
 * their types say. up_ring_t puts the lines callers write on every send
 * (head), the lines the loop writes per record or per drain (ctail, tail)
 * and the read-only ones (cap, cells, commit) on cache lines of their own
 * (_Alignas(64)); that holds only if the producer holding the ring starts
 * on such a boundary, which calloc() does not give (16 bytes). Every
 * producer of a partitioned handle, and each of those fields, must start
 * where its alignment says. */
#include <criterion/criterion.h>
#include <stdint.h>

#include "engine.h"
#include "fault_common.h"

TestSuite(structure_layout, .timeout = 60);

static bool aligned(const void *p, size_t a) { return (uintptr_t)p % a == 0; }

/* Scenario: a handle of 7 partitions, 2 producers each; every one of the
 * 14 producers starts on a UP_RP_ALIGN boundary, and its ring's head,
 * tail, cap and ctail each start a cache line. */
Test(structure_layout, every_producer_starts_where_its_ring_lines_need)
{
    upulsar_tb_t *tb = ft_broker();
    cr_assert_eq(upulsar_tb_set_partitions(tb, "layout", 7), UPULSAR_OK);
    upulsar_client_t *c = ft_client(tb, NULL);
    const char *kv[] = {"producers.per.partition", "2", NULL};
    upulsar_producer_t *p = ft_producer(c, NULL, "layout", 0, kv);
    int ng = atomic_load(&p->ngroups), n = 0;
    up_group_t *groups = atomic_load(&p->groups);
    for (int g = 0; g < ng; g++)
        for (int i = 0; i < groups[g].nrps; i++, n++) {
            up_rp_t *rp = groups[g].rps[i];
            cr_assert(aligned(rp, UP_RP_ALIGN), "producer %d.%d at %p", g, i, (void *)rp);
            cr_assert(aligned(&rp->ring.head, 64) && aligned(&rp->ring.tail, 64) &&
                          aligned(&rp->ring.cap, 64) && aligned(&rp->ring.ctail, 64) &&
                          aligned(&rp->mem_held, 64),
                      "producer %d.%d: a ring line does not start a cache line", g, i);
        }
    cr_assert_eq(n, 14, "%d producers", n);
    cr_assert_eq(upulsar_producer_stop(p, FT_WAIT_MS), UPULSAR_OK);
    ft_stop_client_and_broker(tb, c);
}
