// Package viewcount is a demonstration job that needs no external service:
// synthetic video views are counted per video with a running keyed count, and
// at the end of the input the most viewed videos are printed.
//
// It registers itself as "viewcount" in jobs.Default. Parameters: events
// (number of views to generate), videos (distinct videos), top (how many to
// print), rate (views per second, 0 for full speed).
package viewcount
