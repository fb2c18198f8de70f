/* test_structure_err_class.c -- one classification of errors
 * (up_err_classify(), src/rp_state.c) for start, the supervisor and a
 * SEND_ERROR.
 *
 * creation_classes_are_the_classification_at_creation: up_err_class(),
 *   which start and the supervisor call, is up_err_classify() at
 *   UP_ERR_AT_CREATE / UP_ERR_AT_RECREATE, for every code, shared and
 *   exclusive.
 * send_errors_are_classified_by_what_the_producer_does_next: a SEND_ERROR
 *   with ChecksumError or NotAllowed refuses one entry; ProducerFenced,
 *   TopicTerminated and AuthorizationError end the producer; any other code
 *   re-creates it (transient when the application would retry it too,
 *   refused otherwise); "refuse one entry" is a class only a send has.
 * what_ends_a_recreation_also_ends_a_sending_producer: an error that makes
 *   the supervisor fail the group when a re-creation returns it also fails
 *   a producer whose SEND the broker refused with it, unless only an
 *   exclusive access mode makes it terminal (ProducerBusy, re-created and
 *   refused again there). */
#include <criterion/criterion.h>

#include "engine.h"
#include "rp_state.h"
#include "upulsar/upulsar.h"

/* every library code and every broker code */
#define FOR_EACH_CODE(e)                                                                        \
    for (int e##_i = 0; e##_i < 2; e##_i++)                                                     \
        for (int e = e##_i ? UPULSAR_ERR_BROKER_BASE : -200;                                    \
             e <= (e##_i ? UPULSAR_ERR_BROKER_BASE + 100 : 200); e++)

Test(structure_err_class, creation_classes_are_the_classification_at_creation)
{
    int n = 0;
    FOR_EACH_CODE(e)
    for (int k = 0; k < 4; k++) {
        bool created = k & 1, excl = k & 2;
        cr_assert_eq(up_err_class((upulsar_err_t)e, created, excl),
                     up_err_classify((upulsar_err_t)e,
                                     created ? UP_ERR_AT_RECREATE : UP_ERR_AT_CREATE, excl),
                     "%d", e);
        cr_assert_neq(up_err_class((upulsar_err_t)e, created, excl), UP_ERR_CLASS_ENTRY, "%d",
                      e);
        n++;
    }
    cr_assert_gt(n, 0);
}

Test(structure_err_class, send_errors_are_classified_by_what_the_producer_does_next)
{
    enum { T = UP_ERR_CLASS_TRANSIENT, R = UP_ERR_CLASS_REFUSED, X = UP_ERR_CLASS_TERMINAL,
           E = UP_ERR_CLASS_ENTRY };
    static const struct {
        upulsar_err_t err;
        int want;
    } cases[] = {
        {UPULSAR_ERR_CHECKSUM_ERROR, E},
        {UPULSAR_ERR_NOT_ALLOWED, E},
        {UPULSAR_ERR_PRODUCER_FENCED, X},
        {UPULSAR_ERR_TOPIC_TERMINATED, X},
        {UPULSAR_ERR_AUTHORIZATION_ERROR, X},
        {UPULSAR_ERR_PERSISTENCE_ERROR, T},
        {UPULSAR_ERR_SERVICE_NOT_READY, T},
        {UPULSAR_ERR_UNKNOWN_ERROR, T},
        {UPULSAR_ERR_TOO_MANY_REQUESTS, T},
        {UPULSAR_ERR_PRODUCER_BUSY, R},
        {UPULSAR_ERR_TOPIC_NOT_FOUND, R},
        {UPULSAR_ERR_PRODUCER_BLOCKED_QUOTA_EXCEEDED_EXCEPTION, R},
    };
    cr_assert_eq(up_err_classify(UPULSAR_OK, UP_ERR_AT_SEND, false), UP_ERR_CLASS_NONE);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int x = 0; x < 2; x++)
            cr_assert_eq(up_err_classify(cases[i].err, UP_ERR_AT_SEND, x), cases[i].want,
                         "%s at send%s", upulsar_err_name(cases[i].err),
                         x ? ", exclusive" : "");
    int entries = 0, terminal = 0;
    FOR_EACH_CODE(e)
    for (int x = 0; x < 2; x++) {
        up_err_class_t cl = up_err_classify((upulsar_err_t)e, UP_ERR_AT_SEND, x);
        if (e == 0) {
            cr_assert_eq(cl, UP_ERR_CLASS_NONE);
            continue;
        }
        cr_assert_neq(cl, UP_ERR_CLASS_NONE, "%d", e);
        entries += cl == UP_ERR_CLASS_ENTRY;
        terminal += cl == UP_ERR_CLASS_TERMINAL;
        if (cl == UP_ERR_CLASS_TRANSIENT)
            cr_assert(upulsar_err_is_retriable((upulsar_err_t)e), "%d", e);
        if (cl == UP_ERR_CLASS_REFUSED)
            cr_assert(!upulsar_err_is_retriable((upulsar_err_t)e), "%d", e);
    }
    cr_assert_eq(entries, 2 * 2, "exactly ChecksumError and NotAllowed refuse one entry");
    cr_assert_eq(terminal, 3 * 2, "exactly three codes end a sending producer");
}

Test(structure_err_class, what_ends_a_recreation_also_ends_a_sending_producer)
{
    FOR_EACH_CODE(e)
    {
        if (up_err_classify((upulsar_err_t)e, UP_ERR_AT_RECREATE, false) ==
            UP_ERR_CLASS_TERMINAL)
            cr_assert_eq(up_err_classify((upulsar_err_t)e, UP_ERR_AT_SEND, false),
                         UP_ERR_CLASS_TERMINAL, "%s", upulsar_err_name((upulsar_err_t)e));
    }
}
