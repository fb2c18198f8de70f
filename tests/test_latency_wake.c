/* test_latency_wake.c -- the loop's estimate of its own wake-up delay
 * (loop.h up_wake_ahead_learn()), by which it aims its sleeps ahead of a
 * batch deadline so that a batch leaves by its deadline: it rises quickly
 * to the delays it sees, falls slowly when they shrink (so it follows the
 * upper part of a spread, not its middle), is never more than
 * UP_WAKE_AHEAD_MAX_US, and one slow wake-up moves it only part way; and
 * what a batch window takes of it leaves the window at least half its
 * delay, so the loop sleeps toward a window renewed as it ends instead of
 * waking for it again and again. */
#include <criterion/criterion.h>

#include "loop.h"

Test(latency_wake, the_estimate_reaches_a_steady_delay_and_stays_at_it)
{
    uint64_t est = 0;
    for (int i = 0; i < 40; i++)
        est = up_wake_ahead_learn(est, 40);
    cr_assert_eq(est, 40, "steady 40 us delays: estimate %llu", (unsigned long long)est);
    for (int i = 0; i < 100; i++)
        est = up_wake_ahead_learn(est, 40);
    cr_assert_eq(est, 40);
}

Test(latency_wake, it_follows_the_upper_part_of_a_spread)
{
    /* nine wake-ups 10 us late for each one 60 us late: the estimate
     * settles well above the 15 us mean, below the largest */
    uint64_t est = 0, lo = UINT64_MAX, hi = 0;
    for (int i = 0; i < 2000; i++) {
        est = up_wake_ahead_learn(est, i % 10 == 9 ? 60 : 10);
        if (i >= 1000) {
            lo = est < lo ? est : lo;
            hi = est > hi ? est : hi;
        }
    }
    cr_assert_gt(lo, 15, "settled as low as %llu", (unsigned long long)lo);
    cr_assert_lt(hi, 60, "settled as high as %llu", (unsigned long long)hi);
}

Test(latency_wake, one_slow_wake_up_moves_it_only_part_way_and_is_capped)
{
    uint64_t est = 20;
    est = up_wake_ahead_learn(est, 100000); /* a stall of 100 ms */
    cr_assert_eq(est, 20 + (UP_WAKE_AHEAD_MAX_US - 20 + 3) / 4);
    for (int i = 0; i < 100; i++)
        est = up_wake_ahead_learn(est, 100000);
    cr_assert_eq(est, UP_WAKE_AHEAD_MAX_US, "never past the cap");
}

Test(latency_wake, it_falls_slowly_once_the_delays_shrink)
{
    uint64_t est = UP_WAKE_AHEAD_MAX_US;
    est = up_wake_ahead_learn(est, 0);
    cr_assert_eq(est, UP_WAKE_AHEAD_MAX_US - UP_WAKE_AHEAD_MAX_US / 32);
    for (int i = 0; i < 400; i++)
        est = up_wake_ahead_learn(est, 0);
    cr_assert_lt(est, 32, "after 400 punctual wake-ups: %llu", (unsigned long long)est);
}

Test(latency_wake, a_window_is_reached_no_earlier_than_half_its_delay)
{
    for (uint64_t delay = 0; delay <= 3000; delay++)
        for (uint64_t est = 0; est <= UP_WAKE_AHEAD_MAX_US; est++) {
            uint64_t ahead = up_deadline_ahead(est, delay);
            cr_assert_leq(ahead, est);
            cr_assert_geq(delay - ahead, (delay + 1) / 2,
                          "a %llu us window with a %llu us wake-up delay is reached after %llu us",
                          (unsigned long long)delay, (unsigned long long)est,
                          (unsigned long long)(delay - ahead));
        }
    cr_assert_eq(up_deadline_ahead(40, 1000), 40, "a long window takes the whole estimate");
}
