select b.id, a.id as a_id from {{ ref('b') }} as b join {{ ref('a') }} as a on a.id = b.a_id
