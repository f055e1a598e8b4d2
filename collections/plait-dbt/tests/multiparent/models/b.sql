-- var a_id=3 points b at no row of a: the relationships test fails and c, d are skipped.
select 10 as id, {{ var('a_id', 1) }} as a_id
