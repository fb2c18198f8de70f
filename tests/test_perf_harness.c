/* upulsar-perf --ceiling: one invocation runs upulsar-ceiling on the same
 * broker setup after its own run and reports upulsar's rate as a share of
 * the ceiling's. What is checked is the arithmetic and the plumbing (the
 * ceiling ran with the same partitions and message size, and the ratio
 * printed is the two rates' quotient), never how fast either ran. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_common.h"

/* The number after "KEY": inside the object that starts at @p from. */
static double num_after(const char *from, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(from, pat);
    cr_assert(p, "no %s in %s", key, from);
    return strtod(p + strlen(pat), NULL);
}

Test(perf_harness, ceiling_ratio_is_upulsars_rate_over_the_ceilings_same_setup,
     .timeout = 120)
{
    const char *args[] = {"-q",  "--json", "-d", "0.5", "--warmup", "0.2", "-p",
                          "3",   "-s",     "64", "-t", "1",        "--ceiling", NULL};
    child_t c = spawn_cli(args);
    run_t r = finish_cli(&c, NULL, 0, (run_t){0});
    cr_assert_eq(r.status, 0, "status %d, stderr: %s", r.status, r.err);
    const char *ceil = strstr(r.out, "\"ceiling\":{");
    cr_assert(ceil, "no ceiling object in %s", r.out);
    double rate = num_after(r.out, "msgs_per_sec"); /* the first: upulsar's own */
    cr_assert_lt(strstr(r.out, "\"msgs_per_sec\":"), ceil, "upulsar's figures come first");
    double crate = num_after(ceil, "msgs_per_sec");
    cr_assert_gt(rate, 0);
    cr_assert_gt(crate, 0);
    cr_assert_eq(num_after(ceil, "partitions"), 3);
    cr_assert_eq(num_after(ceil, "size"), 64);
    cr_assert_eq(num_after(ceil, "batch_messages"), 512);
    cr_assert_gt(num_after(ceil, "client_cpu_ns_per_msg"), 0);
    double ratio = num_after(r.out, "ratio_to_ceiling");
    /* the rates are printed rounded to a message per second, the ratio to
     * four places */
    cr_assert_leq(fabs(ratio - rate / crate), 0.0001, "ratio %f, rates %f / %f", ratio, rate,
                  crate);
    double cpu = num_after(r.out, "client_cpu_ns_per_msg"), ccpu = num_after(ceil, "client_cpu_ns_per_msg");
    /* each printed to 0.1 ns, the quotient to 0.001 */
    double q = cpu / ccpu, tol = 0.0005 + q * (0.05 / cpu + 0.05 / ccpu);
    cr_assert_leq(fabs(num_after(r.out, "client_cpu_to_ceiling") - q), tol, "cpu %f / %f", cpu,
                  ccpu);
    run_free(&r);
}

Test(perf_harness, ceiling_is_refused_at_a_set_rate_with_a_reason)
{
    const char *args[] = {"-q", "--ceiling", "-r", "1000", NULL};
    child_t c = spawn_cli(args);
    run_t r = finish_cli(&c, NULL, 0, (run_t){0});
    cr_assert_eq(r.status, 2, "status %d", r.status);
    cr_assert(strstr(r.err, "--ceiling") && strstr(r.err, "--rate"), "stderr: %s", r.err);
    run_free(&r);
}

Test(perf_harness, a_count_run_without_warmup_measures_every_message)
{
    const char *args[] = {"-q", "--json", "-n", "1000", "--warmup", "0", NULL};
    child_t c = spawn_cli(args);
    run_t r = finish_cli(&c, NULL, 0, (run_t){0});
    cr_assert_eq(r.status, 0, "status %d, stderr: %s", r.status, r.err);
    cr_assert_eq(num_after(r.out, "messages_acked"), 1000);
    cr_assert_gt(num_after(r.out, "measured_seconds"), 0, "%s", r.out);
    cr_assert_gt(num_after(r.out, "msgs_per_sec"), 0, "%s", r.out);
    run_free(&r);
}

Test(perf_harness, a_run_over_within_its_warmup_fails_instead_of_printing_figures)
{
    const char *args[] = {"-q", "--json", "-n", "10", "--warmup", "30", NULL};
    child_t c = spawn_cli(args);
    run_t r = finish_cli(&c, NULL, 0, (run_t){0});
    cr_assert_eq(r.status, 1, "status %d", r.status);
    cr_assert(strstr(r.err, "nothing was measured"), "stderr: %s", r.err);
    cr_assert_null(strstr(r.out, "msgs_per_sec"), "figures printed: %s", r.out);
    run_free(&r);
}

Test(perf_harness, set_overrides_the_harness_and_the_summary_shows_what_ran)
{
    const char *args[] = {"-q",    "--json", "-d", "0.3", "--warmup", "0.1", "--set",
                          "compression=lz4", "--set", "batch.max.delay.ms=5", NULL};
    child_t c = spawn_cli(args);
    run_t r = finish_cli(&c, NULL, 0, (run_t){0});
    cr_assert_eq(r.status, 0, "status %d, stderr: %s", r.status, r.err);
    cr_assert(strstr(r.out, "\"compression\":\"lz4\""), "%s", r.out);
    cr_assert(strstr(r.out, "\"batch_delay_ms\":\"5\""), "%s", r.out);
    run_free(&r);
}
