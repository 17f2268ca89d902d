/* SPDX-License-Identifier: MIT */
/*
 * test-url.c: credentials never survive url_redact (storage/url.c).
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "common/compiler.h"
#include "storage/backends/url.h"
#include "tests/unit/testutil.h"

static void check(const char *in, const char *want)
{
	char out[512];
	size_t n = url_redact(in, strlen(in), out, sizeof(out));

	assert_string_equal(out, want);
	assert_int_equal(n, strlen(want));
}

static void test_url_redact(void **state UNUSED)
{
	check("http://host/x.img", "http://host/x.img");
	check("https://user:pw@host:8443/a/b.vhd", "https://host:8443/a/b.vhd");
	check("https://acct.blob.core.windows.net/c/d.vhd?sv=2020&sig=SECRET%3D",
	      "https://acct.blob.core.windows.net/c/d.vhd?" URL_REDACTED);
	check("http://h/x#frag", "http://h/x");
	check("http://u@h/x?a=1#f", "http://h/x?" URL_REDACTED);
	/* '@' in the path is not userinfo. */
	check("http://h/a@b", "http://h/a@b");
	/* The last '@' of the authority ends the userinfo. */
	check("http://a@b:c@h/x", "http://h/x");
	check("nbd+unix:///exp?socket=/tmp/s", "nbd+unix:///exp?socket=/tmp/s");
	check("nbds+unix:///e?tls-psk-file=/k&socket=/tmp/s",
	      "nbds+unix:///e?socket=/tmp/s&" URL_REDACTED);
	check("nbds://alice@h:10809/e?tls-certificates=/etc/pki", "nbds://h:10809/e?" URL_REDACTED);
	check("http://h/x?", "http://h/x");
	check("no url here", "no url here");
}

static void test_url_redact_truncates(void **state UNUSED)
{
	char out[8];

	url_redact("https://user:pw@host/x", 22, out, sizeof(out));
	assert_string_equal(out, "https:/");
	url_redact("http://h", 8, out, 0);         /* no room: nothing written */
}

static void test_url_redact_text(void **state UNUSED)
{
	char out[512];
	char *dup;

	url_redact_text("memdiff:blob:flat:https://u:p@h/d.img?sig=S,ro", out, sizeof(out));
	assert_string_equal(out, "memdiff:blob:flat:https://h/d.img?" URL_REDACTED ",ro");
	url_redact_text("nbd:nbd+unix:///?socket=/s", out, sizeof(out));
	assert_string_equal(out, "nbd:nbd+unix:///?socket=/s");
	url_redact_text("file:/x.img", out, sizeof(out));
	assert_string_equal(out, "file:/x.img");
	/* Two URLs. */
	url_redact_text("a http://u@h/?k=1 b https://h2/?q", out, sizeof(out));
	assert_string_equal(out, "a http://h/?" URL_REDACTED);
	dup = url_redact_text_dup("striped:64K:blob:flat:http://h/a?x=1");
	assert_non_null(dup);
	assert_string_equal(dup, "striped:64K:blob:flat:http://h/a?" URL_REDACTED);
	free(dup);
	/* Worst case growth fits. */
	dup = url_redact_text_dup("x://?a,y://?b");
	assert_non_null(dup);
	assert_string_equal(dup, "x://?" URL_REDACTED ",y://?" URL_REDACTED);
	free(dup);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_url_redact),
		cmocka_unit_test(test_url_redact_truncates),
		cmocka_unit_test(test_url_redact_text),
	};

	return cmocka_run_group_tests_name("url", tests, NULL, NULL);
}
