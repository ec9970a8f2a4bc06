//! The enums of the message model: a message's status, who sends it and
//! who receives it, each written as a fixed string.

use crate::string_enum::string_enum;

string_enum!(
    /// The status a message is shown with.
    MessageStatus {
        /// Something needs attention.
        Warning => "warning",
        /// Something failed.
        Error => "error",
        /// Something completed.
        Success => "success",
    }
);

string_enum!(
    /// Who a message comes from.
    SenderFrom {
        /// Herald or the product itself.
        System => "system",
        /// A person using the product.
        User => "user",
    }
);

string_enum!(
    /// Who a message is addressed to.
    RecipientTarget {
        /// Every user of the account.
        Account => "account",
        /// One user.
        User => "user",
    }
);
