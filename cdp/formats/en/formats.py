"""How the admin shows dates and times (Django's `date` filter defaults, the change lists and detail pages): the
same ISO-like form the profile, the event pages and the exports use ("2026-11-25 07:25 UTC"), instead of the
English locale's "Nov. 25, 2026, 7:25 a.m." next to it. Times are in the display time zone (the
`display_timezone` setting, cdp.middleware.DisplayTimezoneMiddleware), which T names. Input formats are Django's."""

DATE_FORMAT = "Y-m-d"
DATETIME_FORMAT = "Y-m-d H:i T"
TIME_FORMAT = "H:i"
SHORT_DATE_FORMAT = "Y-m-d"
SHORT_DATETIME_FORMAT = "Y-m-d H:i"
MONTH_DAY_FORMAT = "j F"
YEAR_MONTH_FORMAT = "F Y"
