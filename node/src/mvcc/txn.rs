//! etcd 3.4's Txn (`applierV3backend.Txn`): choose the branch of every (nested) transaction by
//! its compares against the state before the transaction, check the chosen operations against
//! that same state, then execute them in order in one revision.

use detcd_proto::etcdserverpb::request_op::Request;
use detcd_proto::etcdserverpb::response_op::Response;
use detcd_proto::etcdserverpb::{RequestOp, ResponseHeader, ResponseOp, TxnRequest, TxnResponse};

use super::batch::{TxnCtx, Writer};
use super::range::{self, header};
use super::MvccError;

/// The chosen branch of a transaction and, in op order, the plans of the nested transactions in
/// it (etcd's `txnPath`).
struct Plan<'r> {
    succeeded: bool,
    ops: &'r [RequestOp],
    nested: Vec<Plan<'r>>,
}

impl<'r> Plan<'r> {
    /// Visits every non-transaction operation of the chosen path, depth first in op order.
    fn visit(&self, f: &mut dyn FnMut(&'r RequestOp) -> Result<(), MvccError>) -> Result<(), MvccError> {
        let mut nested = self.nested.iter();
        for op in self.ops {
            match op.request {
                Some(Request::RequestTxn(_)) => next_plan(&mut nested).visit(f)?,
                _ => f(op)?,
            }
        }
        Ok(())
    }
}

/// The plan of the next nested transaction; the plan was built from the same ops, so it exists.
fn next_plan<'p, 'r>(nested: &mut std::slice::Iter<'p, Plan<'r>>) -> &'p Plan<'r> {
    match nested.next() {
        Some(plan) => plan,
        None => panic!("txn plan has fewer nested plans than nested txn ops"),
    }
}

impl Writer<'_, '_> {
    /// etcd's Txn as one write transaction; with an error nothing was applied (the caller
    /// removes what execution wrote).
    pub fn txn(&mut self, ctx: &mut TxnCtx, req: &TxnRequest) -> Result<TxnResponse, MvccError> {
        assert!(!ctx.changed(), "a txn starts its own revision");
        let before = ctx.view_rev();
        let plan = self.plan(req, before)?;
        plan.visit(&mut |op| self.check_put(op))?;
        plan.visit(&mut |op| self.check_range(op, before))?;
        let mut resp = self.execute(ctx, &plan)?;
        resp.header = header(ctx.view_rev());
        Ok(resp)
    }

    /// Evaluates the compares of `req` and of the nested transactions in its chosen branch, all
    /// against revision `at` (etcd's `compareToPath`).
    fn plan<'r>(&self, req: &'r TxnRequest, at: i64) -> Result<Plan<'r>, MvccError> {
        let mut succeeded = true;
        for c in &req.compare {
            if !range::compare(self.index, &*self.table, at, c)? {
                succeeded = false;
                break;
            }
        }
        let ops = if succeeded { &req.success } else { &req.failure };
        let nested = ops
            .iter()
            .filter_map(|op| match &op.request {
                Some(Request::RequestTxn(t)) => Some(self.plan(t, at)),
                _ => None,
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Plan { succeeded, ops, nested })
    }

    /// etcd's `checkRequestPut`: ignore_value / ignore_lease need the key to exist beforehand, and a
    /// named lease must exist.
    fn check_put(&self, op: &RequestOp) -> Result<(), MvccError> {
        match &op.request {
            Some(Request::RequestPut(p))
                if (p.ignore_value || p.ignore_lease) && self.index.latest(&p.key).is_none() =>
            {
                Err(MvccError::KeyNotFound)
            }
            Some(Request::RequestPut(p)) if p.lease != 0 && !(self.lease_exists)(p.lease) => {
                Err(MvccError::LeaseNotFound)
            }
            _ => Ok(()),
        }
    }

    /// etcd's `checkRequestRange`: an explicit revision must be neither future nor compacted.
    fn check_range(&self, op: &RequestOp, current: i64) -> Result<(), MvccError> {
        match &op.request {
            Some(Request::RequestRange(r)) if r.revision != 0 => {
                if r.revision > current {
                    Err(MvccError::FutureRevision)
                } else if r.revision < self.compact_rev {
                    Err(MvccError::Compacted)
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }

    /// Executes the chosen operations in order (etcd's `applyTxn`). Nested responses carry a
    /// header with no revision, as etcd's do.
    fn execute(&mut self, ctx: &mut TxnCtx, plan: &Plan<'_>) -> Result<TxnResponse, MvccError> {
        let mut nested = plan.nested.iter();
        let mut responses = Vec::with_capacity(plan.ops.len());
        for op in plan.ops {
            let response = match &op.request {
                Some(Request::RequestRange(r)) => Some(Response::ResponseRange(self.range(ctx, r)?)),
                Some(Request::RequestPut(p)) => Some(Response::ResponsePut(self.put(ctx, p)?)),
                Some(Request::RequestDeleteRange(d)) => Some(Response::ResponseDeleteRange(self.delete_range(ctx, d)?)),
                Some(Request::RequestTxn(_)) => Some(Response::ResponseTxn(self.execute(ctx, next_plan(&mut nested))?)),
                None => None,
            };
            responses.push(ResponseOp { response });
        }
        assert!(nested.next().is_none(), "txn plan has unused nested plans");
        Ok(TxnResponse { header: Some(ResponseHeader::default()), succeeded: plan.succeeded, responses })
    }
}
